"""The alerting switch under a real scheduler: the alert DAG's pause toggle.

`airflow dags test` runs tasks in-process and behaves differently from a real run in
exactly this respect (the Airflow 2 ORM check passes there and fails here), so this goes
through api-server, scheduler and dag-processor.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import env
from tests.airflow_runs import alert_run_of, off_schedule
from tools.airflow_stack import AirflowStack

pytestmark = pytest.mark.usefixtures("cdn_connection", "slack")
DAGS = (env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID)


def trigger_states(airflow: AirflowStack, runs: list[dict]) -> list[str]:
    return [
        ti["state"]
        for run in runs
        for ti in airflow.task_instances(env.TRANSFORM_DAG_ID, run["dag_run_id"])
        if ti["task_id"] == "trigger_alert"
    ]


def test_a_paused_alert_dag_gets_no_run_and_unpausing_turns_alerting_back_on(
    sim, bq, tmp_path, metadata_db
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=now.minute % 5) - timedelta(minutes=10)
    settings = {
        "CDN_START_DATE": start.isoformat(),
        "CDN_INGEST_POKE_S": "2",
        "CDN_INGEST_WAIT_S": "15",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    with AirflowStack(tmp_path / "airflow", settings, database=metadata_db) as airflow:
        airflow.provision()
        for dag_id in DAGS:
            airflow.wait_for_dag(dag_id)
        assert airflow.api("GET", f"dags/{env.ALERT_DAG_ID}")["is_paused"]  # paused at creation
        airflow.set_paused(env.INGEST_DAG_ID, False)
        airflow.set_paused(env.TRANSFORM_DAG_ID, False)
        runs = airflow.wait_for_runs(env.TRANSFORM_DAG_ID, 2)
        assert {r["state"] for r in runs} == {"success"}
        assert trigger_states(airflow, runs) == ["skipped"] * len(runs)
        assert airflow.runs(env.ALERT_DAG_ID) == []  # none created, none queued

        airflow.set_paused(env.ALERT_DAG_ID, False)  # the UI toggle: alerting on
        manual = airflow.api(
            "POST", f"dags/{env.TRANSFORM_DAG_ID}/dagRuns", logical_date=off_schedule(now)
        )
        runs = airflow.wait_for_runs(env.TRANSFORM_DAG_ID, len(runs) + 1)
        # A slow run may see the next window's scheduled run too: pick ours by id.
        (manual_run,) = [r for r in runs if r["dag_run_id"] == manual["dag_run_id"]]
        assert trigger_states(airflow, [manual_run]) == ["success"]
        assert alert_run_of(airflow, manual_run)["state"] == "success"
