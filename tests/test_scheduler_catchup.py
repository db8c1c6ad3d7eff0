"""DAG 1 under a real Airflow scheduler: a one-hour catchup with runs in parallel."""

from __future__ import annotations

import time

import pytest

import env
from dag_utils.tables import EVERY_PARTITION
from tests.conftest import API_MAX_IN_FLIGHT, TEST_DATASET, TEST_SIM
from tools.airflow_stack import AirflowStack, catchup_start

pytestmark = pytest.mark.usefixtures("cdn_connection")


def test_a_one_hour_catchup_lands_every_minute_once_within_the_api_budget(
    sim, bq, tmp_path, metadata_db
) -> None:
    sim.configure(latency_ms=20)
    start = catchup_start(60)
    settings = {
        "CDN_START_DATE": start.isoformat(),
        "CDN_API_POOL_SLOTS": "2",  # two fetches at once, each with half the budget
    }
    started = time.monotonic()
    with AirflowStack(tmp_path / "airflow", settings, database=metadata_db) as airflow:
        airflow.provision()  # CDN_API_POOL_SLOTS above
        airflow.wait_for_dag("cdn_raw_ingest")
        airflow.set_paused("cdn_raw_ingest", False)
        runs = airflow.wait_for_runs("cdn_raw_ingest", 12)
        unreported = airflow.tasks_ended_unreported()
    elapsed = time.monotonic() - started
    assert {r["state"] for r in runs} == {"success"}
    assert unreported == []  # every task ran to its own end: no sensor poke lost to the race
    first = int((start - env.AVAILABILITY_LAG).timestamp())
    rows = list(
        bq.query_and_wait(
            f"SELECT domain, UNIX_SECONDS(minute) AS minute, complete "
            f"FROM `local.{TEST_DATASET}.{env.RAW_TABLE}` WHERE minute >= {EVERY_PARTITION}"
        )
    )
    keys = [(r["domain"], r["minute"]) for r in rows if first <= r["minute"] < first + 3600]
    assert len(keys) == len(set(keys)) == 60 * len(TEST_SIM.domain_list())
    assert all(r["complete"] for r in rows)
    in_flight = sim.stats()["max_in_flight"]
    assert in_flight <= API_MAX_IN_FLIGHT
    print(
        f"\ncatchup under the scheduler: {len(runs)} runs, {len(keys)} rows in the hour, "
        f"{elapsed:.0f} s with start-up, max {in_flight} in flight (budget {API_MAX_IN_FLIGHT})"
    )
