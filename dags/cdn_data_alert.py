"""DAG 3 of 3 — checks a window of the dashboard table and tells Slack when data is missing.

Triggered by `cdn_log_transform` with the window in its conf; pausing this DAG in the UI
switches alerting off. One message when an incident starts, a reminder at most every
`CDN_ALERT_REMINDER_MIN`, one when data is complete again; catch-up and backfill checks
are summed up in one message by the next live check. The incident state is the Airflow
Variable `cdn_alert_state`, read back after each write (a lost write fails `notify`). If
Slack stays down, `notify` fails after its retries; if Slack refuses the token, at once.
No data task depends on it. `check_window` reads the raw and dashboard table assets
(`dag_utils/assets.py`): the expected domains come from the raw table, the minutes
present from the dashboard.
"""

from __future__ import annotations

from airflow.sdk import BaseHook, Variable, dag, task

import env
from dag_utils import assets
from dag_utils.bigquery_task import bigquery_task, jobs_of
from dag_utils.tokens import rejected_token_fails_now
from dag_utils.variables import set_json_checked
from dag_utils.windows import window_of


@dag(
    dag_id=env.ALERT_DAG_ID,
    schedule=None,
    start_date=env.START_DATE,
    catchup=False,
    max_active_runs=1,  # checks change the incident state one at a time
    default_args=env.DEFAULT_ARGS,
    tags=["cdn", "alert"],
    doc_md=__doc__,
)
def cdn_data_alert() -> None:
    @bigquery_task(inlets=[assets.RAW, assets.DASHBOARD])
    def check_window(dag_run=None, ti=None) -> dict:
        from dag_utils import alerting  # BigQuery: in the task, never at parse time

        window = window_of(dag_run.conf)
        with jobs_of(ti, window.start):
            return alerting.as_dict(alerting.check_window(window))

    @task
    def notify(check: dict, dag_run=None) -> str:
        from dag_utils import alerting, slack

        state = Variable.get(env.ALERT_STATE_VARIABLE, default={}, deserialize_json=True)
        live = bool(dag_run.conf.get("live", True))
        state, message = alerting.decide(
            state, alerting.WindowCheck(**check), live, env.ALERT_REMINDER
        )
        if message is not None:
            conn = BaseHook.get_connection(env.SLACK_CONN_ID)
            client = slack.client(conn.password, conn.extra_dejson.get("base_url"))
            with rejected_token_fails_now(env.SLACK_CONN_ID):
                slack.post(client, env.ALERT_CHANNEL, message.text, message.blocks)
        set_json_checked(env.ALERT_STATE_VARIABLE, state)  # a lost write would re-open
        return message.kind if message else "silent"

    notify(check_window())


cdn_data_alert()
