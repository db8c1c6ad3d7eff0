"""Airflow operators of the bundle. The transform DAG imports it at parse time."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk.exceptions import AirflowSkipException

import env
from dag_utils.windows import is_live, window_conf, window_for


class TriggerAlertForWindow(TriggerDagRunOperator):
    """Triggers the alert DAG for this run's window, only if the alert DAG is unpaused.

    Pausing the alert DAG in the UI is how users switch alerting off, so a paused DAG
    must not get a run: a queued run would fire later, when someone unpauses it. The
    paused state is read through the Task SDK (Airflow 3 forbids the ORM in tasks).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trigger_dag_id=env.ALERT_DAG_ID, skip_when_already_exists=True, **kwargs)

    def execute(self, context: Any) -> Any:
        if context["ti"].get_dag(self.trigger_dag_id).is_paused:
            message = f"{self.trigger_dag_id} is paused (alerting switched off): not triggering it"
            self.log.info(message)
            raise AirflowSkipException(message)
        run = context["dag_run"]
        window = window_for(run.data_interval_start, run.data_interval_end)
        live = is_live(run.start_date, run.data_interval_end, run.run_type)
        self.conf = window_conf(window, live)
        # A rerun never checks the same window twice; a backfill run has a check of its own.
        backfill = "" if live or getattr(run.run_type, "value", "") != "backfill" else run.run_id
        self.trigger_run_id = f"window__{window.start:%Y-%m-%dT%H:%M}" + (
            f"__{backfill}" if backfill else ""
        )
        return super().execute(context)
