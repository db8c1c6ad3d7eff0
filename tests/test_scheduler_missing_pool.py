"""A missing pool under a real scheduler: the run fails with the pool's name, not waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import env
from tools.airflow_stack import AirflowStack

pytestmark = pytest.mark.usefixtures("cdn_connection")


def test_a_run_whose_pool_is_missing_fails_naming_the_pool(sim, bq, tmp_path, metadata_db) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=now.minute % 5) - timedelta(minutes=5)
    settings = {
        "CDN_START_DATE": start.isoformat(),
        "CDN_POOL_WAIT_S": "20",
        "CDN_POOL_POKE_S": "5",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",  # a task's parse on a loaded machine
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
    assert {r["state"] for r in runs} == {"failed"}
    assert watch["state"] == "failed"
    assert states["plan_shards"]["state"] == "skipped"  # was waiting for the pool for ever
    assert "for pool 'cdn_api' and no task holds a slot of it" in str(log)
