"""The BigQuery helpers against the emulator."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from google.api_core.exceptions import Forbidden
from google.cloud import bigquery as google_bigquery

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


DAY_MS = 86_400_000


def test_tables_are_created_with_the_configured_retention_and_partition_filter(bq) -> None:
    bigquery.ensure_tables(bq, tables.RAW, tables.AUDIT, tables.DASHBOARD)
    created = {
        spec.name: bq.get_table(bigquery.table_id(spec.name))
        for spec in (tables.RAW, tables.AUDIT, tables.DASHBOARD)
    }
    assert {name: t.time_partitioning.expiration_ms for name, t in created.items()} == {
        env.RAW_TABLE: env.RAW_RETENTION_DAYS * DAY_MS,
        env.AUDIT_TABLE: env.AUDIT_RETENTION_DAYS * DAY_MS,
        env.DASHBOARD_TABLE: env.DASHBOARD_RETENTION_DAYS * DAY_MS,
    }
    assert {name: bool(t.require_partition_filter) for name, t in created.items()} == {
        env.RAW_TABLE: True,
        env.AUDIT_TABLE: False,
        env.DASHBOARD_TABLE: True,
    }
    assert [t.expires for t in created.values()] == [None, None, None]


def _table_as_a_dataset_default_leaves_it(bq) -> None:
    """The raw table as a dataset with 60-day defaults (an org policy, a sandbox) creates it."""
    dataset = google_bigquery.Dataset(f"local.{TEST_DATASET}")
    dataset.default_table_expiration_ms = 60 * DAY_MS
    bq.create_dataset(dataset)
    table = google_bigquery.Table(
        bigquery.table_id(tables.RAW.name), schema=bigquery.schema(tables.RAW.schema)
    )
    table.time_partitioning = google_bigquery.TimePartitioning(
        field="minute", expiration_ms=60 * DAY_MS
    )
    bq.create_table(table)
    assert bq.get_table(table).expires is not None


@pytest.mark.parametrize("days", [400, 30, None])
def test_an_existing_table_with_other_options_is_reconciled(bq, days: int | None) -> None:
    _table_as_a_dataset_default_leaves_it(bq)
    spec = dataclasses.replace(tables.RAW, retention_days=days)
    bigquery.ensure_table(bq, spec)
    table = bq.get_table(bigquery.table_id(spec.name))
    assert table.time_partitioning.expiration_ms == (days and days * DAY_MS)
    assert table.require_partition_filter is True
    assert table.expires is None
    assert bigquery.reconcile_lifetime(bq, table, spec) == []  # nothing left to change
