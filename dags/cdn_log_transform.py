"""DAG 2 of 3 — raw JSON → typed dashboard table, then the alert DAG if it is unpaused.

Same schedule and windows as `cdn_raw_ingest`. It waits for the ingest run of its window
to finish, successful or not, and transforms whatever is there: missing data must still
be checked. `trigger_alert` starts `cdn_data_alert` for the window only while that DAG
is unpaused; paused, it ends skipped and creates no run. `transform_window` reads the raw
table asset and updates the dashboard table asset (`dag_utils/assets.py`), for lineage.
"""

from __future__ import annotations

from airflow.providers.standard.sensors.external_task import ExternalTaskSensor
from airflow.sdk import dag, task

import env
from dag_utils import assets
from dag_utils.operators import TriggerAlertForWindow
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
    wait_for_ingest = ExternalTaskSensor(
        task_id="wait_for_ingest",
        external_dag_id=env.INGEST_DAG_ID,
        external_task_id=None,  # the whole run
        allowed_states=["success", "failed"],
        mode="reschedule",
        poke_interval=env.INGEST_POKE.total_seconds(),
        timeout=env.INGEST_WAIT.total_seconds(),
        soft_fail=True,  # past the wait, transform anyway
    )

    @task(
        pool=env.BQ_WRITE_POOL,
        trigger_rule="all_done",
        inlets=[assets.RAW],
        outlets=[assets.DASHBOARD],
    )
    def transform_window(
        data_interval_start=None, data_interval_end=None, outlet_events=None
    ) -> dict:
        from dag_utils import transform  # BigQuery: in the task, never at parse time

        window = window_for(data_interval_start, data_interval_end)
        summary = transform.transform_window(window)
        outlet_events[assets.DASHBOARD].extra = assets.window_extra(window)
        return summary

    trigger_alert = TriggerAlertForWindow(task_id="trigger_alert", trigger_rule="all_done")

    wait_for_ingest >> transform_window() >> trigger_alert


cdn_log_transform()
