"""The BigQuery helpers against the emulator."""

from __future__ import annotations

from dag_utils import bigquery


def test_rows_read_a_page_at_a_time_are_every_row_once_in_order(bq) -> None:
    statement = "SELECT n FROM UNNEST(GENERATE_ARRAY(1, @n)) AS n ORDER BY n"
    rows = bigquery.query_rows(bq, statement, {"n": 25}, page_size=10)
    assert [row["n"] for row in rows] == list(range(1, 26))
