"""Running the bundle's DAGs through Airflow in tests."""

from __future__ import annotations

from datetime import datetime
from functools import cache

from airflow.models.dagrun import DagRun


@cache
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    assert not bag.import_errors, bag.import_errors
    return bag


def run_dag(dag_id: str, interval_end: datetime) -> DagRun:
    """One run of the DAG for the data interval ending at `interval_end`, as `airflow dags test`."""
    dag = dag_bag().dags[dag_id]
    return dag.test(logical_date=interval_end)


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
