"""`make demo` / `make demo-down`: the pipeline on local stand-ins, under a real Airflow.

`up` starts the CDN API simulator (production faults on, and a gap: some minutes never
arrive), the BigQuery emulator, the Slack stand-in and Airflow 3 (api-server, scheduler,
dag-processor, triggerer) on 127.0.0.1. It provisions connections, variables and pools
from config/airflow-local.json and unpauses the three DAGs so catchup runs the last
hour. It waits with progress, prints what happened, and leaves everything running for
you to explore. `down` stops every process `up` started, and nothing else. Running `up`
twice is safe: it stops the previous demo first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import time

import requests

import env
from dag_utils.tables import EVERY_PARTITION
from tools.airflow_stack import PASSWORD, USER, AirflowStack, catchup_start
from tools.local_servers import LOCAL, REPO, BigQueryEmulator, CdnApiSimulator, SlackStandIn
from tools.postgres import PostgresServer
from tools.progress import CatchupProgress

DEMO = LOCAL / "demo"
PIDS = DEMO / "processes.json"
PROVISIONING = REPO / "config" / "airflow-local.json"
SIMULATOR = {
    "domains": 20,
    "hostile": True,
    "capacity": 16,
    "latency_ms": 40,
    "available_after_s": 0,
    "rate_429": 0.01,
    "rate_5xx": 0.02,
    "rate_reset": 0.01,
    "rate_rtcode": 0.01,
    "rate_reorder": 0.1,
    "rate_null": 0.01,
    "rate_empty": 0.01,  # a gap: these endpoint-minutes never arrive
}
DAGS = (env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID)


def up() -> None:
    down(quiet=True)
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    provisioning = json.loads(PROVISIONING.read_text())
    start = catchup_start(60)
    try:
        sim = _started(
            CdnApiSimulator(token=provisioning["connections"]["cdn_api"]["password"], **SIMULATOR)
        )
        bigquery = _started(BigQueryEmulator(DEMO / "bigquery"))
        slack_token = provisioning["connections"]["slack_api_default"]["password"]
        slack = _started(SlackStandIn(slack_token, (env.ALERT_CHANNEL,)))
        postgres = _started(PostgresServer(DEMO / "postgres").start())
        os.environ["BIGQUERY_EMULATOR_HOST"] = bigquery.url
        settings = {
            "BIGQUERY_EMULATOR_HOST": bigquery.url,
            "CDN_START_DATE": start.isoformat(),
            "CDN_API_MAX_IN_FLIGHT": "16",
        }
        print(f"CDN API simulator  {sim.url}  ({json.dumps(SIMULATOR)})")
        print(f"BigQuery emulator  {bigquery.url}")
        print(f"Slack stand-in     {slack.api_url}")
        print(f"PostgreSQL 15      127.0.0.1:{postgres.port}  (Airflow's metadata DB)")
        print("starting Airflow (api-server, scheduler, dag-processor, triggerer) ...", flush=True)
        database = postgres.new_database()
        airflow = AirflowStack(DEMO / "airflow", settings, database=database, triggerer=True)
        try:
            airflow.start()
        finally:
            _record([p.pid for p in airflow.procs])
        provision(airflow, provisioning, {"cdn_api_url": sim.url, "slack_api_url": slack.api_url})
        for dag_id in DAGS:
            airflow.wait_for_dag(dag_id)
            airflow.set_paused(dag_id, False)
        print(f"unpaused {', '.join(DAGS)}: catchup from {start:%H:%M} UTC")
        wait_with_progress(airflow, 12)
        report(sim.stats(), slack.messages())
    except BaseException:
        print("the demo did not come up; stopping what it started (logs: .local/logs, "
              ".local/demo/airflow/service-logs)")  # fmt: skip
        down(quiet=True)
        raise
    print(f"\nAirflow UI: {airflow.url}  (login {USER} / {PASSWORD}). Everything keeps running;")
    print(ui_guide(airflow.url))
    print("pause cdn_data_alert there to switch alerting off. `make demo-down` stops it all.")


def ui_guide(url: str) -> str:
    """Where in the Airflow UI to see where the data goes."""
    return "\n".join([
        f"  Assets            {url}/assets: the three tables. Open one for its graph,",
        "                    Scheduling (DAG -> table) or Task Dependencies (raw table ->",
        "                    transform -> dashboard table -> alert check), and its events",
        f"  DAG dependencies  {url}/dags/{env.TRANSFORM_DAG_ID}: Graph, Options (gear),",
        "                    Dependencies: All Dag Dependencies (each DAG, the tables it writes)",
    ])  # fmt: skip


def provision(airflow: AirflowStack, provisioning: dict, addresses: dict[str, str]) -> None:
    """Connections and variables from the checked-in development file, then `make provision`."""
    for conn_id, conn in provisioning["connections"].items():
        body = {
            "connection_id": conn_id,
            "conn_type": conn["conn_type"],
            "host": _filled(conn.get("host", ""), addresses) or None,
            "password": conn.get("password"),
            "extra": json.dumps(_filled(conn["extra"], addresses)) if "extra" in conn else None,
        }
        _upsert(airflow, "connections", conn_id, body)
    for key, value in provisioning["variables"].items():
        _upsert(airflow, "variables", key, {"key": key, "value": value})
    print(airflow.provision(), end="")  # the pools, and every connection checked


def _filled(value, addresses: dict[str, str]):
    """The value with {placeholders} in its strings replaced by the stand-ins' addresses."""
    if isinstance(value, dict):
        return {k: _filled(v, addresses) for k, v in value.items()}
    return value.format(**addresses) if isinstance(value, str) else value


def _upsert(airflow: AirflowStack, kind: str, key: str, body: dict) -> None:
    try:
        airflow.api("POST", kind, **body)
    except requests.HTTPError:
        airflow.api("PATCH", f"{kind}/{key}", **body)


def down(quiet: bool = False) -> None:
    """Stop every process group `up` recorded, and nothing else."""
    pids = json.loads(PIDS.read_text()) if PIDS.exists() else []
    alive = [pid for pid in pids if _is_ours(pid)]
    for pid in alive:
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_group_alive(pid) for pid in alive):
        time.sleep(0.5)
    for pid in alive:
        if _group_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    PIDS.unlink(missing_ok=True)
    if not quiet:
        print(f"stopped {len(alive)} demo process groups" if alive else "no demo was running")


def _started(server):
    _record([server.proc.pid])
    return server


def _record(pids: list[int]) -> None:
    known = json.loads(PIDS.read_text()) if PIDS.exists() else []
    PIDS.write_text(json.dumps(known + pids))


def _is_ours(pid: int) -> bool:
    """Still the session leader `up` started (a reused pid would not lead its session)."""
    try:
        return os.getsid(pid) == pid
    except ProcessLookupError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def wait_with_progress(airflow: AirflowStack, windows: int) -> None:
    """Until the transform has run every window and no run of any DAG is unfinished."""
    deadline = time.monotonic() + 900
    with CatchupProgress(DAGS) as progress:
        while time.monotonic() < deadline:
            states = {dag_id: [r["state"] for r in airflow.runs(dag_id)] for dag_id in DAGS}
            for dag_id, dag_states in states.items():
                progress.update(dag_id, dag_states, windows)
            busy = any(s not in ("success", "failed") for runs in states.values() for s in runs)
            if len(states[env.TRANSFORM_DAG_ID]) >= windows and not busy:
                return
            time.sleep(2)
    raise TimeoutError("the catchup did not finish in 15 minutes")


# The demo's own read-only queries; table ids come from env.py through table_id().
TOTALS = """
SELECT COUNT(*) AS row_count, COUNTIF(complete) AS complete, COUNT(DISTINCT domain) AS domains,
       MIN(minute) AS first, MAX(minute) AS last
FROM `{raw}` WHERE minute >= <every>"""
AUDIT = "SELECT * FROM `{audit}` ORDER BY window_start"
DASHBOARD = """
SELECT COUNT(*) AS row_count, COUNTIF(complete) AS complete, SUM(requests) AS requests,
       MIN(minute_local) AS first_local
FROM `{dashboard}` WHERE minute_utc >= <every>"""
HOSTILE = (
    "SELECT domain FROM `{raw}` WHERE domain LIKE '%DROP TABLE%' AND minute >= <every> LIMIT 1"
)
TOTALS, DASHBOARD, HOSTILE = (
    q.replace("<every>", EVERY_PARTITION) for q in (TOTALS, DASHBOARD, HOSTILE)
)
AUDIT_COLUMNS = ("calls", "retries", "complete", "incomplete", "refetched", "filled", "lost")


def report(api_stats: dict, messages: list[dict]) -> None:
    from dag_utils import bigquery

    bq = bigquery.client()
    names = bigquery.table_ids()
    totals = next(iter(bq.query_and_wait(TOTALS.format(**names))))
    minutes = totals["row_count"] // max(1, totals["domains"])
    print(f"\nraw table {names['raw']}")
    print(
        f"  {totals['row_count']} rows = {totals['domains']} domains x {minutes} minutes "
        f"({totals['first']:%H:%M} .. {totals['last']:%H:%M} UTC); {totals['complete']} "
        f"complete, {totals['row_count'] - totals['complete']} incomplete"
    )
    print(f"\naudit table {names['audit']}")
    print("  window (UTC) " + "".join(f"{c:>11}" for c in AUDIT_COLUMNS))
    for row in bq.query_and_wait(AUDIT.format(**names)):
        window = f"{row['window_start']:%H:%M}-{row['window_end']:%H:%M}"
        print(f"  {window}  " + "".join(f"{row[c]:>11}" for c in AUDIT_COLUMNS))
    board = next(iter(bq.query_and_wait(DASHBOARD.format(**names))))
    print(f"\ndashboard table {names['dashboard']}")
    print(
        f"  {board['row_count']} typed rows, {board['complete']} complete, {board['requests']:,} "
        f"requests in all; first minute in {env.DASHBOARD_TIMEZONE}: {board['first_local']}"
    )
    print(f"\nSlack messages the stand-in received in {env.ALERT_CHANNEL}: {len(messages)}")
    for message in messages:
        print("  " + message["text"].replace("\n", "\n  "))
    hostile = next(iter(bq.query_and_wait(HOSTILE.format(**names))))["domain"]
    print(f"\na hostile domain name, stored verbatim: {hostile!r}")
    print(
        f"the CDN API saw {api_stats['calls']} calls, at most {api_stats['max_in_flight']} "
        f"in flight; by status {api_stats['by_status']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down"))
    {"up": up, "down": down}[parser.parse_args().action]()


if __name__ == "__main__":
    main()
