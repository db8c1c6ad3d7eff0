"""Switching alerting off and on with the Airflow UI's own pause toggle, in a browser."""

from __future__ import annotations

import pytest

import env
from tests.airflow_runs import alert_run_of, latest, rerun_of
from tools.airflow_stack import MIN_POKE_S, PASSWORD, USER, AirflowStack, catchup_start
from tools.airflow_ui import logged_in, toggle_pause

pytestmark = pytest.mark.usefixtures("cdn_connection", "slack")


def is_paused(airflow: AirflowStack, dag_id: str) -> bool:
    return airflow.api("GET", f"dags/{dag_id}")["is_paused"]


def trigger_alert_state(airflow: AirflowStack, run: dict) -> str:
    tis = airflow.task_instances(env.TRANSFORM_DAG_ID, run["dag_run_id"])
    return next(ti["state"] for ti in tis if ti["task_id"] == "trigger_alert")


def test_the_ui_toggle_switches_alerting_off_and_on(sim, bq, tmp_path, metadata_db) -> None:
    settings = {  # catchup makes one transform run: the last complete window
        "CDN_START_DATE": catchup_start(5).isoformat(),
        "CDN_INGEST_POKE_S": str(MIN_POKE_S),
        "CDN_INGEST_WAIT_S": "5",  # the ingest DAG stays paused: transform after one poke
    }
    with AirflowStack(tmp_path / "airflow", settings, database=metadata_db) as airflow:
        airflow.provision()
        for dag_id in (env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID):
            airflow.wait_for_dag(dag_id)
        airflow.set_paused(env.ALERT_DAG_ID, False)  # alerting on, as in production

        with logged_in(airflow.url, USER, PASSWORD) as page:
            toggle_pause(page, airflow.url, env.ALERT_DAG_ID, paused=True)
            assert is_paused(airflow, env.ALERT_DAG_ID)

            airflow.set_paused(env.TRANSFORM_DAG_ID, False)
            runs = airflow.wait_for_runs(env.TRANSFORM_DAG_ID, 1)
            assert {r["state"] for r in runs} == {"success"}
            assert [trigger_alert_state(airflow, r) for r in runs] == ["skipped"] * len(runs)
            assert airflow.runs(env.ALERT_DAG_ID) == []

            toggle_pause(page, airflow.url, env.ALERT_DAG_ID, paused=False)
            page.screenshot(path=str(tmp_path / "unpaused.png"))
            assert not is_paused(airflow, env.ALERT_DAG_ID), tmp_path / "unpaused.png"

        manual = airflow.api(
            "POST", f"dags/{env.TRANSFORM_DAG_ID}/dagRuns", logical_date=rerun_of(latest(runs))
        )
        runs = airflow.wait_for_runs(env.TRANSFORM_DAG_ID, len(runs) + 1)
        (rerun,) = [r for r in runs if r["dag_run_id"] == manual["dag_run_id"]]
        assert trigger_alert_state(airflow, rerun) == "success"
        assert alert_run_of(airflow, rerun)["state"] == "success"
        assert airflow.tasks_ended_unreported() == []  # no sensor poke lost to the race
