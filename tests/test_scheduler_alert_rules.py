"""Condition rules and run types under a real scheduler: a 5xx spike, then a backfill.

Goes through api-server, scheduler and dag-processor, as Composer runs the bundle: the
run type the trigger sees is the SDK's DagRunType enum, not a string.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta

import pytest

import env
from tests.conftest import TEST_SIM
from tools.airflow_stack import MIN_POKE_S, AirflowStack, catchup_start

pytestmark = pytest.mark.usefixtures("cdn_connection")
DAGS = (env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID)


@pytest.mark.timeout(1500)  # five windows one after another, then a backfill of them
def test_a_15_minute_5xx_spike_opens_and_recovers_once_and_a_backfill_posts_nothing(
    sim, bq, slack, tmp_path, metadata_db
) -> None:
    start = catchup_start(25)  # five windows of catchup
    domain = TEST_SIM.domain_list()[2]
    spike_start = start  # window 1 (windows are shifted back by the availability lag)
    sim.configure(spikes=[f"{domain}:{int(spike_start.timestamp())}:15:5xx"])
    settings = {
        "CDN_START_DATE": start.isoformat(),
        "CDN_MAX_ACTIVE_RUNS": "1",  # checks in window order; out of order is unit-tested
        "CDN_ALERT_LIVE_WITHIN_MIN": "120",  # the catchup counts as live here
        "CDN_INGEST_POKE_S": str(MIN_POKE_S),
    }
    with AirflowStack(tmp_path / "airflow", settings, database=metadata_db) as airflow:
        airflow.provision()
        for dag_id in DAGS:
            airflow.wait_for_dag(dag_id)
        for dag_id in DAGS:
            airflow.set_paused(dag_id, False)
        airflow.wait_for_runs(env.TRANSFORM_DAG_ID, 5)
        alerts = airflow.wait_for_runs(env.ALERT_DAG_ID, 5)
        assert {r["state"] for r in alerts} == {"success"}
        texts = [m["text"] for m in slack.messages()]
        assert len(texts) == 2, texts
        assert texts[0].startswith(":rotating_light: 5xx errors (error ratio above 10%")
        assert texts[0].endswith(f": {domain} (30.0%)")
        assert texts[1].startswith(":white_check_mark: 5xx errors back to normal for ")
        assert texts[1].endswith(f": {domain}")

        last = start + timedelta(minutes=20)
        try:
            airflow.airflow(
                "backfill", "create", "--dag-id", env.TRANSFORM_DAG_ID, "--from-date",
                start.isoformat(), "--to-date", last.isoformat(), "--reprocess-behavior",
                "completed",
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            pytest.fail(f"airflow backfill create failed: {exc.stdout[-2000:]}{exc.stderr[-2000:]}")
        # Reprocessing completed windows clears their runs, which keep their run ids and
        # become run type "backfill" (airflow/models/backfill.py, _handle_clear_run).
        runs = airflow.wait_for_runs(env.TRANSFORM_DAG_ID, 5)
        backfills = [r for r in runs if r["run_type"] == "backfill"]
        assert len(backfills) >= 4 and {r["state"] for r in backfills} == {"success"}
        alerts = airflow.wait_for_runs(env.ALERT_DAG_ID, 5 + len(backfills))
        checks = [
            r for r in alerts
            if any(r["dag_run_id"].endswith(f"__{b['dag_run_id']}") for b in backfills)
        ]  # fmt: skip
        assert len(checks) == len(backfills)
        assert {r["conf"]["live"] for r in checks} == {False}  # recent windows, yet not live
        # The backfill's spike is told by no check of its own: it waits for the next live
        # check's summary (posted already if a new window came meanwhile).
        later = [m["text"] for m in slack.messages()][2:]
        assert all(t.startswith(":information_source: Catch-up:") for t in later), later
        state = json.loads(airflow.api("GET", f"variables/{env.ALERT_STATE_VARIABLE}")["value"])
        pending = ((state.get("catchup") or {}).get("rules") or {}).get("5xx errors", 0)
        told = sum(int(n) for t in later for n in re.findall(r"5xx errors fired for (\d+)", t))
        assert pending + told == 3  # windows 1 to 3, spiked on one domain
        assert airflow.tasks_ended_unreported() == []  # no sensor poke lost to the race
