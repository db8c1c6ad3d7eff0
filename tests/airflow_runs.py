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


def run_dag(dag_id: str, interval_end: datetime, mark_success: str | None = None) -> DagRun:
    """One run of the DAG for the data interval ending at `interval_end`, as `airflow dags test`.

    Tasks whose id matches `mark_success` are marked successful instead of running.
    """
    dag = dag_bag().dags[dag_id]
    return dag.test(logical_date=interval_end, mark_success_pattern=mark_success)


def task_states(run: DagRun) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}
