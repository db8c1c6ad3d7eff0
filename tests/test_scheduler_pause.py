"""The alerting switch under a real scheduler: the alert DAG's pause toggle.

`airflow dags test` runs tasks in-process and behaves differently from a real run in
exactly this respect (the Airflow 2 ORM check passes there and fails here), so this goes
through api-server, scheduler and dag-processor. It is also each Airflow of the support
matrix's end-to-end window under a real scheduler: ingest, transform, and a triggered check.
"""

from __future__ import annotations

from datetime import datetime

import pytest

import env
from dag_utils.tables import EVERY_PARTITION
from tests.airflow_runs import alert_run_of, latest, rerun_of
from tests.conftest import TEST_DATASET, TEST_SIM
from tools.airflow_stack import MIN_POKE_S, AirflowStack, catchup_start

pytestmark = [pytest.mark.matrix, pytest.mark.usefixtures("cdn_connection", "slack")]
DAGS = (env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID)


def trigger_states(airflow: AirflowStack, runs: list[dict]) -> list[str]:
    return [
        ti["state"]
        for run in runs
        for ti in airflow.task_instances(env.TRANSFORM_DAG_ID, run["dag_run_id"])
        if ti["task_id"] == "trigger_alert"
    ]


def raw_minutes(bq, run: dict) -> list[tuple[str, int]]:
    """The complete raw (domain, minute) rows of a transform run's window."""
    start = datetime.fromisoformat(run["data_interval_start"]) - env.AVAILABILITY_LAG
    first = int(start.timestamp())
    rows = bq.query_and_wait(
        "SELECT domain, UNIX_SECONDS(minute) AS minute "
        f"FROM `local.{TEST_DATASET}.{env.RAW_TABLE}` "
        f"WHERE complete AND minute >= {EVERY_PARTITION}"
    )
    return [(r["domain"], r["minute"]) for r in rows if first <= r["minute"] < first + 300]


def test_a_paused_alert_dag_gets_no_run_and_unpausing_turns_alerting_back_on(
    sim, bq, tmp_path, metadata_db
) -> None:
    settings = {
        "CDN_START_DATE": catchup_start(10).isoformat(),
        "CDN_INGEST_POKE_S": str(MIN_POKE_S),
        # The manual run has no ingest run of its own logical date: it waits this long.
        "CDN_INGEST_WAIT_S": "30",
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
        ingests = {r["dag_run_id"]: r["state"] for r in airflow.runs(env.INGEST_DAG_ID)}
        for run in runs:  # the ingest window of each: every domain-minute once, complete
            assert ingests[run["dag_run_id"]] == "success"
            minutes = raw_minutes(bq, run)
            assert len(minutes) == len(set(minutes)) == 5 * len(TEST_SIM.domain_list())

        airflow.set_paused(env.ALERT_DAG_ID, False)  # the UI toggle: alerting on
        manual = airflow.api(
            "POST", f"dags/{env.TRANSFORM_DAG_ID}/dagRuns", logical_date=rerun_of(latest(runs))
        )
        runs = airflow.wait_for_runs(env.TRANSFORM_DAG_ID, len(runs) + 1)
        # A slow run may see the next window's scheduled run too: pick ours by id.
        (manual_run,) = [r for r in runs if r["dag_run_id"] == manual["dag_run_id"]]
        assert trigger_states(airflow, [manual_run]) == ["success"]
        assert alert_run_of(airflow, manual_run)["state"] == "success"
        assert airflow.tasks_ended_unreported() == []  # no sensor poke lost to the race
