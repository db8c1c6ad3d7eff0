"""`make provision` against a bare local Airflow: to a working window, then nothing to do."""

from __future__ import annotations

import pytest

import env
from tools.airflow_stack import PASSWORD, USER, AirflowStack, catchup_start
from tools.provision import AirflowApi, local_token, provision

pytestmark = pytest.mark.usefixtures("cdn_connection", "slack")


@pytest.mark.timeout(900)
def test_provision_brings_a_bare_airflow_to_a_working_window_and_is_idempotent(
    sim, bq, tmp_path, monkeypatch, metadata_db
) -> None:
    settings = {
        "CDN_START_DATE": catchup_start(5).isoformat(),
        "CDN_API_POOL_SLOTS": "2",
    }
    with AirflowStack(tmp_path / "airflow", settings, database=metadata_db) as airflow:
        plan = airflow.provision(dry_run=True)
        assert "would create pool cdn_api with 2 slots" in plan
        assert "would create pool cdn_bq_writes with 1 slots" in plan
        assert "2 changes to make (dry run: nothing changed)" in plan
        pools = {p["name"] for p in airflow.api("GET", "pools")["pools"]}
        assert pools == {"default_pool"}

        first = airflow.provision()
        assert "did create pool cdn_api with 2 slots" in first and "MISSING" not in first
        assert airflow.api("GET", "pools/cdn_api")["slots"] == 2
        assert airflow.api("GET", "pools/cdn_bq_writes")["slots"] == 1
        second = airflow.provision()
        assert "0 changes made" in second and "did " not in second

        airflow.wait_for_dag(env.INGEST_DAG_ID)
        airflow.set_paused(env.INGEST_DAG_ID, False)
        runs = airflow.wait_for_runs(env.INGEST_DAG_ID, 1, timeout=600)
        assert {r["state"] for r in runs} == {"success"}
        assert airflow.tasks_ended_unreported() == []

        api = AirflowApi(airflow.url, local_token(airflow.url, USER, PASSWORD))
        resized = provision(api, pools={env.CDN_API_POOL: 3, env.BQ_WRITE_POOL: 1})
        assert resized.changes == ["pool cdn_api: 2 -> 3 slots"]
        assert airflow.api("GET", "pools/cdn_api")["slots"] == 3
        monkeypatch.delenv("AIRFLOW_CONN_SLACK_API_DEFAULT")
        unresolved = provision(api, dry_run=True)
        assert unresolved.missing_connections == [
            "connection slack_api_default does not resolve: create the Secret Manager secret "
            "airflow-connections-slack_api_default (README 'First deploy')"
        ]
