"""DAG 2's work: turn raw JSON rows into typed dashboard rows.

The dashboard follows the raw table: each transform rewrites its window and every raw
row that ingest runs published since the dashboard last took them (minutes filled late,
windows whose ingest finished after their transform). The audit row of each ingest run
says which minutes it may have written; `dashboard_at` marks the runs already taken.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import env
from dag_utils import bigquery, bigquery_jobs, sql, tables
from dag_utils.windows import Window

log = logging.getLogger(__name__)


def transform_window(window: Window) -> dict[str, Any]:
    """Rewrite the window's dashboard rows and those of pending ingest runs, atomically.

    Runs under the single slot of the write pool, so no run publishes between reading
    the pending runs and taking them; first cancels any write a killed try left running.
    """
    bq = bigquery.client()
    bigquery_jobs.end_dead_writes(bq, env.BQ_WRITERS)
    bigquery.ensure_tables(bq, tables.RAW, tables.AUDIT, tables.DASHBOARD)
    names = bigquery.table_ids()
    follow_since = window.start - env.DASHBOARD_FOLLOW
    pending = bigquery.query(
        bq, sql.SELECT_PENDING_RUNS.format(**names), {"follow_since": follow_since}
    )
    params = {
        "window_start": window.start,
        "window_end": window.end,
        "follow_since": follow_since,
        "since": min([window.start, *(_at(r["refetch_start"]) for r in pending)]),
        "until": max([window.end, *(_at(r["window_end"]) for r in pending)]),
        "runs": sorted(r["run_id"] for r in pending),
    }
    timezone = bigquery.timezone_name(env.DASHBOARD_TIMEZONE)
    bigquery.query(bq, sql.TRANSFORM_WINDOW.format(timezone=timezone, **names), params)
    window_params = {"window_start": window.start, "window_end": window.end}
    (row,) = bigquery.query(bq, sql.COUNT_DASHBOARD_WINDOW.format(**names), window_params)
    summary = {"window_start": window.start.isoformat(), **dict(row), "runs_taken": len(pending)}
    log.info("dashboard window written: %s", summary)
    return summary


def _at(unix_seconds: int) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)
