"""A missing pool under a real scheduler: the run fails with the pool's name, not waits."""

from __future__ import annotations

import pytest

import env
from tools.airflow_stack import AirflowStack, catchup_start

pytestmark = pytest.mark.usefixtures("cdn_connection")


def test_a_run_whose_pool_is_missing_fails_naming_the_pool(sim, bq, tmp_path, metadata_db) -> None:
    settings = {
        "CDN_START_DATE": catchup_start(5).isoformat(),
        "CDN_POOL_WAIT_S": "20",
    }
    with AirflowStack(
        tmp_path / "airflow", settings, database=metadata_db
    ) as airflow:  # no pool but default_pool
        airflow.wait_for_dag(env.INGEST_DAG_ID)
        airflow.set_paused(env.INGEST_DAG_ID, False)
        runs = airflow.wait_for_runs(env.INGEST_DAG_ID, 1, timeout=300)
        run = runs[0]
        states = {
            ti["task_id"]: ti for ti in airflow.task_instances(env.INGEST_DAG_ID, run["dag_run_id"])
        }
        watch = states["watch_pools"]
        log = airflow.api(
            "GET",
            f"dags/{env.INGEST_DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/watch_pools"
            f"/logs/{max(watch['try_number'], 1)}?full_content=true",
        )
        unreported = airflow.tasks_ended_unreported()
    assert {r["state"] for r in runs} == {"failed"}
    assert watch["state"] == "failed"
    assert states["plan_shards"]["state"] == "skipped"  # was waiting for the pool for ever
    assert "for pool 'cdn_api' and no task holds a slot of it" in str(log)
    assert unreported == []  # the watch failed itself; no poke was lost to the sensor race
