"""`make bench-scale`: 10,000 domains x one 5-minute window through the ingest DAG.

150,000 calls against the simulator (capacity 128, ~40 ms) under a real Airflow
scheduler: the shards run as mapped tasks under the `cdn_api` pool (4 slots x 32 in
flight = the API's 128). Prints the fetch's wall time against the capacity bound
(calls / capacity x mean latency), CPU ms per call, peak RSS of the worker processes,
and the time of the atomic write. Targets: the window done in under 5 minutes, within
1.5x the capacity bound.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime

import env
from tools.airflow_stack import AirflowStack, catchup_start
from tools.local_servers import LOCAL, BigQueryEmulator, CdnApiSimulator
from tools.postgres import own_database

HOME = LOCAL / "bench-scale"
DOMAINS, CAPACITY, LATENCY_MS, SLOTS, IN_FLIGHT, SHARD = 10_000, 128, 40.0, 4, 128, 2_500
TOKEN = "dev-token"  # noqa: S105 - the simulator's development token


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    start = catchup_start(5)  # catchup: the last complete window
    sim_args = {"domains": DOMAINS, "capacity": CAPACITY, "latency_ms": LATENCY_MS,
                "available_after_s": 0, "token": TOKEN}  # fmt: skip
    with (
        CdnApiSimulator(**sim_args) as sim,
        BigQueryEmulator(HOME / "bigquery") as bigquery,
        own_database(HOME / "postgres") as database,
    ):
        os.environ["BIGQUERY_EMULATOR_HOST"] = bigquery.url
        settings = {
            "BIGQUERY_EMULATOR_HOST": bigquery.url,
            "AIRFLOW_CONN_CDN_API": json.dumps(
                {"conn_type": "http", "host": sim.url, "password": TOKEN}
            ),
            "CDN_START_DATE": start.isoformat(),
            "CDN_MAX_ACTIVE_RUNS": "1",
            "CDN_API_POOL_SLOTS": str(SLOTS),
            "CDN_API_MAX_IN_FLIGHT": str(IN_FLIGHT),
            "CDN_SHARD_SIZE": str(SHARD),
        }
        with AirflowStack(
            HOME / "airflow", settings, database=database, parallelism=SLOTS + 2
        ) as airflow:
            airflow.provision()  # CDN_API_POOL_SLOTS above
            airflow.wait_for_dag(env.INGEST_DAG_ID)
            airflow.set_paused(env.INGEST_DAG_ID, False)
            run = airflow.wait_for_runs(env.INGEST_DAG_ID, 1, timeout=900)[0]
            airflow.set_paused(env.INGEST_DAG_ID, True)
            tis = airflow.task_instances(env.INGEST_DAG_ID, run["dag_run_id"])
            report(run, tis, sim.stats())


def report(run: dict, tis: list[dict], server: dict) -> None:
    from dag_utils import bigquery, raw_ingest, sql

    def at(ti: dict, key: str) -> datetime:
        return datetime.fromisoformat(ti[key])

    def seconds(ti: dict) -> float:
        return (at(ti, "end_date") - at(ti, "start_date")).total_seconds()

    fetches = [ti for ti in tis if ti["task_id"] == "fetch_shard"]
    publish = next(ti for ti in tis if ti["task_id"] == "publish_window")
    first, last = min(at(t, "start_date") for t in fetches), max(at(t, "end_date") for t in fetches)
    fetch_wall = (last - first).total_seconds()
    bq = bigquery.client()
    statement = sql.SELECT_AUDIT_ROW.format(**bigquery.table_ids())
    window = raw_ingest.window_for(
        datetime.fromisoformat(run["data_interval_start"]),
        datetime.fromisoformat(run["data_interval_end"]),
    )
    key = {"window_start": window.start, "run_id": run["dag_run_id"]}
    (audit,) = bigquery.query(bq, statement, key)
    shards = audit["client_stats"]["shards"]
    calls = sum(s["calls"] for s in shards)
    needed = DOMAINS * 5 * 3
    bound = needed / CAPACITY * LATENCY_MS / 1000
    run_wall = seconds(run)
    rows = {
        "run state": run["state"],
        "domain-minutes stored": audit["complete"] + audit["incomplete"],
        "of them complete": audit["complete"],
        "API calls": f"{calls} ({audit['retries']} retries)",
        "max in flight at the API": f"{server['max_in_flight']} (budget {IN_FLIGHT})",
        "shards (mapped tasks)": len(fetches),
        "fetch wall (first start to last end)": f"{fetch_wall:.1f} s",
        "capacity bound": f"{bound:.1f} s",
        "ratio": f"{fetch_wall / bound:.2f}x (target <= 1.5x)",
        "CPU per call": f"{sum(s['cpu_s'] for s in shards) * 1000 / calls:.3f} ms",
        "peak RSS per worker": f"{max(s['max_rss_mb'] for s in shards):.0f} MB",
        "atomic write (publish task)": f"{seconds(publish):.1f} s",
        "whole run": f"{run_wall:.1f} s (target < 300 s)",
    }
    print(f"\nbench-scale: {DOMAINS} domains x 5 minutes, capacity {CAPACITY}, ~{LATENCY_MS:g} ms")
    for label, value in rows.items():
        print(f"  {label:<38} {value}")


if __name__ == "__main__":
    main()
