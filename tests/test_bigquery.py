"""The BigQuery helpers against the emulator."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.api_core.exceptions import Forbidden

import env
from dag_utils import bigquery, sql, tables
from tests.conftest import TEST_DATASET


def test_rows_read_a_page_at_a_time_are_every_row_once_in_order(bq) -> None:
    statement = "SELECT n FROM UNNEST(GENERATE_ARRAY(1, @n)) AS n ORDER BY n"
    rows = bigquery.query_rows(bq, statement, {"n": 25}, page_size=10)
    assert [row["n"] for row in rows] == list(range(1, 26))


def test_with_dataset_creation_refused_a_missing_dataset_fails_with_bigquerys_403(
    bq, bq_proxy
) -> None:
    bq_proxy.refuse_dataset_creation()
    try:
        with pytest.raises(Forbidden, match=r"bigquery\.datasets\.create"):
            bigquery.ensure_table(bq, tables.RAW)
    finally:
        bq_proxy.refuse_dataset_creation(False)


def test_the_combined_staging_table_expires_like_the_shard_tables_from_its_creation(bq) -> None:
    bq.create_dataset(f"local.{TEST_DATASET}")
    combined = bigquery.table_id(f"{env.STAGING_TABLE_PREFIX}0123456789abcdef")
    shards = "SELECT TIMESTAMP '2026-11-23 10:00:00+00' AS minute, 'd.example.net' AS domain"
    before = datetime.now(UTC)
    bigquery.query(bq, sql.COMBINE_STAGING.format(staging=combined, shards=shards), {})
    expires = bq.get_table(combined).expires
    assert expires is not None
    assert before + env.STAGING_EXPIRATION <= expires <= datetime.now(UTC) + env.STAGING_EXPIRATION
