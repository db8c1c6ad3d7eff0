"""DAG 2 of 3 — raw JSON → typed dashboard table, then the alert DAG if it is unpaused.

Same schedule and windows as `cdn_raw_ingest`. It waits for the ingest run of its window
to finish, successful or not, and transforms whatever is there: missing data must still
be checked. `trigger_alert` starts `cdn_data_alert` for the window only while that DAG
is unpaused; paused, it ends skipped and creates no run. `transform_window` reads the raw
table asset and updates the dashboard table asset (`dag_utils/assets.py`), for lineage.
"""

from __future__ import annotations

from airflow.sdk import dag, task

import env
from dag_utils import assets, handoff, tables
from dag_utils.bigquery_task import bigquery_task, jobs_of
from dag_utils.schedule import windowed_dag_args, windows
from dag_utils.windows import window_for


@dag(
    dag_id=env.TRANSFORM_DAG_ID,
    schedule=windows(),
    **windowed_dag_args(),
    tags=["cdn", "transform"],
    doc_md=__doc__,
)
def cdn_log_transform() -> None:
    @task.sensor(
        poke_interval=env.INGEST_POKE.total_seconds(),
        timeout=env.INGEST_WAIT.total_seconds(),
        mode="reschedule",
        soft_fail=True,  # past the wait, transform anyway
        retries=env.SENSOR_RETRIES,
    )
    def wait_for_ingest(ti=None, logical_date=None) -> bool:
        """The ingest run of the same window has ended, successfully or not."""
        return handoff.ingest_ended(ti, logical_date)

    @bigquery_task(
        pool=env.BQ_WRITE_POOL,
        trigger_rule="all_done",
        inlets=[assets.RAW],
        outlets=[assets.DASHBOARD],
    )
    def transform_window(
        data_interval_start=None, data_interval_end=None, outlet_events=None, ti=None
    ) -> dict:
        from dag_utils import transform  # BigQuery: in the task, never at parse time

        window = window_for(data_interval_start, data_interval_end)
        with jobs_of(ti, window.start):
            summary = transform.transform_window(window)
        assets.record_writes(outlet_events, (tables.DASHBOARD,), window)
        return summary

    @task(trigger_rule="all_done")
    def trigger_alert(ti=None, dag_run=None) -> None:
        handoff.trigger_alert(ti, dag_run)

    wait_for_ingest() >> transform_window() >> trigger_alert()


cdn_log_transform()
