"""Running the bundle's DAGs through Airflow in tests, and reading a real stack's runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


def off_schedule() -> str:
    """A manual run's logical date now that no scheduled run can have (they fall on whole
    minutes), so a slow test that outlives a window boundary gets no 409 Conflict."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return (now + timedelta(seconds=30)).isoformat()


def alert_run_of(airflow: AirflowStack, transform_run: dict[str, Any]) -> dict[str, Any]:
    """The alert DAG's run that a transform run triggered: the one for its window."""
    interval_end = datetime.fromisoformat(transform_run["data_interval_end"])
    window_end = interval_end - env.AVAILABILITY_LAG
    runs = airflow.wait_for_runs(env.ALERT_DAG_ID, 1)
    (run,) = [r for r in runs if datetime.fromisoformat(r["conf"]["window_end"]) == window_end]
    return run
