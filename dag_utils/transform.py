"""DAG 2's work: turn a window of raw JSON rows into typed dashboard rows."""

from __future__ import annotations

import logging
from typing import Any

import env
from dag_utils import bigquery, sql, tables
from dag_utils.windows import Window

log = logging.getLogger(__name__)


def transform_window(window: Window) -> dict[str, Any]:
    """Replace the window's dashboard rows from the raw table, atomically and idempotently."""
    bq = bigquery.client()
    bigquery.ensure_tables(bq, tables.RAW, tables.DASHBOARD)
    names = bigquery.table_ids()
    params = {"window_start": window.start, "window_end": window.end}
    timezone = bigquery.timezone_name(env.DASHBOARD_TIMEZONE)
    bigquery.query(bq, sql.TRANSFORM_WINDOW.format(timezone=timezone, **names), params)
    (row,) = bigquery.query(bq, sql.COUNT_DASHBOARD_WINDOW.format(**names), params)
    summary = {"window_start": window.start.isoformat(), **dict(row)}
    log.info("dashboard window written: %s", summary)
    return summary
