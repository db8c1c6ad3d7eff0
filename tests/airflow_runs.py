"""Running the bundle's DAGs through Airflow in tests, and reading a real stack's runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

from airflow.models.dagrun import DagRun

import env
from tools.airflow_stack import AirflowStack


@cache
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    assert not bag.import_errors, bag.import_errors
    return bag


def run_dag(dag_id: str, interval_end: datetime, mark_success: str | None = None) -> DagRun:
    """One run of the DAG for the data interval ending at `interval_end`, as `airflow dags test`.

    Tasks whose id matches `mark_success` are marked successful instead of running.
    """
    dag = dag_bag().dags[dag_id]
    return dag.test(logical_date=interval_end, mark_success_pattern=mark_success)


def task_states(run: DagRun) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def asset_events(run: DagRun) -> dict[str, dict]:
    """The asset events the run emitted, from the metadata DB: {asset URI: event extra}."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_dag_id == run.dag_id, AssetEvent.source_run_id == run.run_id
            )
        ).all()
        return {event.asset.uri: event.extra for event in events}


def rerun_of(run: dict[str, Any]) -> str:
    """The logical date of a manual run for the same window as the scheduled `run`.

    Airflow gives a manual run the last complete interval before its logical date, so
    30 s past the window's interval end gives that window, on no whole minute (scheduled
    runs fall on whole minutes: no 409 Conflict). A fresh window would not do: the
    scheduled run of the same window, due at the next 5-minute boundary, may trigger its
    alert run first, and the manual run's trigger then skips (one check per window).
    """
    return (datetime.fromisoformat(run["data_interval_end"]) + timedelta(seconds=30)).isoformat()


def latest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return max(runs, key=lambda run: run["data_interval_end"])


def alert_run_of(airflow: AirflowStack, transform_run: dict[str, Any]) -> dict[str, Any]:
    """The alert DAG's run that a transform run triggered: the one for its window."""
    interval_end = datetime.fromisoformat(transform_run["data_interval_end"])
    window_end = interval_end - env.AVAILABILITY_LAG
    runs = airflow.wait_for_runs(env.ALERT_DAG_ID, 1)
    (run,) = [r for r in runs if datetime.fromisoformat(r["conf"]["window_end"]) == window_end]
    return run
