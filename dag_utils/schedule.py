"""The schedule the ingest and transform DAGs share, so they always cover the same windows."""

from __future__ import annotations

from typing import Any

from airflow.sdk import CronDataIntervalTimetable

import env


def windows() -> CronDataIntervalTimetable:
    """One run per window. A bare cron string would give Airflow 3's trigger timetable,
    whose data intervals have no length; the windows are derived from the data interval."""
    return CronDataIntervalTimetable(env.SCHEDULE, timezone="UTC")


def windowed_dag_args() -> dict[str, Any]:
    """The other `@dag` arguments of a DAG on `windows()`: catchup on, bounded runs."""
    return {
        "start_date": env.START_DATE,
        "catchup": True,
        "max_active_runs": env.MAX_ACTIVE_RUNS,
        "default_args": env.DEFAULT_ARGS,
    }
