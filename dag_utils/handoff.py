"""How the transform DAG hands off: it waits for its window's ingest run, and triggers the
alert DAG for the window when that DAG is unpaused.

The transform DAG imports this at parse time, so it holds plain functions on the Task
SDK only. The standard provider's ExternalTaskSensor and TriggerDagRunOperator would do
the same through the same Task SDK calls, but their modules import the ORM (airflow.models,
SQLAlchemy): about 0.5 s on every parse of the DAG file (`make bench`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

import env
from dag_utils.windows import is_live, window_conf, window_for

INGEST_ENDED = ("success", "failed")


def ingest_ended(ti: Any, logical_date: datetime) -> bool:
    """Whether the ingest DAG's run for the same logical date (the same window) has ended."""
    ended = ti.get_dr_count(
        dag_id=env.INGEST_DAG_ID, logical_dates=[logical_date], states=list(INGEST_ENDED)
    )
    return ended > 0


def alert_run_for(run: Any) -> tuple[str, dict]:
    """The alert run a transform run asks for: its id and conf (the window, live or not).

    A rerun never checks the same window twice (same id); a backfill run has a check of
    its own.
    """
    window = window_for(run.data_interval_start, run.data_interval_end)
    live = is_live(run.start_date, run.data_interval_end, run.run_type)
    run_id = f"window__{window.start:%Y-%m-%dT%H:%M}"
    if not live and getattr(run.run_type, "value", run.run_type) == "backfill":
        run_id += f"__{run.run_id}"
    return run_id, window_conf(window, live)


def trigger_alert(ti: Any, dag_run: Any) -> NoReturn:
    """Ends the task by triggering the alert DAG's run for this window; skipped if paused.

    Pausing the alert DAG in the UI is how users switch alerting off, so a paused DAG
    must not get a run: a queued run would fire later, when someone unpauses it. The
    trigger is the Task SDK's own: the task runner creates the run through the Execution
    API (what TriggerDagRunOperator raises on Airflow 3), skips the task if the run
    already exists, and records the run id in the XCom `trigger_run_id`.
    """
    from airflow.sdk.exceptions import AirflowSkipException, DagRunTriggerException

    if ti.get_dag(env.ALERT_DAG_ID).is_paused:
        raise AirflowSkipException(f"{env.ALERT_DAG_ID} is paused (alerting switched off)")
    run_id, conf = alert_run_for(dag_run)
    raise DagRunTriggerException(
        trigger_dag_id=env.ALERT_DAG_ID,
        dag_run_id=run_id,
        conf=conf,
        logical_date=None,  # the API server sets run_after to the trigger's time
        reset_dag_run=False,
        skip_when_already_exists=True,
        wait_for_completion=False,
        allowed_states=["success"],
        failed_states=["failed"],
        poke_interval=60,
        deferrable=False,
    )
