"""What the pipeline sends to BigQuery, recorded at the client boundary (dag_utils.bigquery)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Self

import pytest
from google.cloud.bigquery import SchemaField


@dataclass(frozen=True)
class SentStatement:
    sql: str
    parameters: tuple[Any, ...]  # the google-cloud-bigquery query parameters, as sent


@dataclass(frozen=True)
class SentLoad:
    table: str
    schema: tuple[SchemaField, ...]


@dataclass
class SentToBigQuery:
    """Wraps query_rows (which `query` calls) and load_parquet; each call still runs."""

    patch: pytest.MonkeyPatch
    statements: list[SentStatement] = field(default_factory=list)
    loads: list[SentLoad] = field(default_factory=list)

    def __enter__(self) -> Self:
        from dag_utils import bigquery  # env.py reads the test settings at import

        query_rows, load_parquet = bigquery.query_rows, bigquery.load_parquet

        @functools.wraps(query_rows)
        def recorded_query_rows(bq, sql, params, page_size=None):
            parameters = tuple(bigquery._parameter(k, v) for k, v in params.items())
            self.statements.append(SentStatement(sql, parameters))
            return query_rows(bq, sql, params, page_size)

        @functools.wraps(load_parquet)
        def recorded_load_parquet(bq, path, table, schema):
            self.loads.append(SentLoad(table, tuple(schema)))
            return load_parquet(bq, path, table, schema)

        self.patch.setattr(bigquery, "query_rows", recorded_query_rows)
        self.patch.setattr(bigquery, "load_parquet", recorded_load_parquet)
        return self

    def __exit__(self, *_: object) -> None:
        self.patch.undo()
