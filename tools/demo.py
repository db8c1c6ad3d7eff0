"""`make demo`: the pipeline on local stand-ins, under a real Airflow, and what it did.

Starts the CDN API simulator (production faults on, and a gap: some minutes never
arrive), the BigQuery emulator, the Slack stand-in and Airflow 3 (api-server, scheduler,
dag-processor) on 127.0.0.1, unpauses the three DAGs so catchup runs the last hour,
waits with progress, prints the tables and the Slack messages, and stops everything.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import UTC, datetime, timedelta

import env
from tools.airflow_stack import AirflowStack
from tools.local_servers import LOCAL, BigQueryEmulator, CdnApiSimulator, SlackStandIn

DEMO = LOCAL / "demo"
TOKEN = "dev-token"  # noqa: S105 - the simulator's development token, not a secret
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
    "token": TOKEN,
}
SLACK_TOKEN = "xoxb-local-demo"  # noqa: S105 - the stand-in's development token
DAGS = (env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID)


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=now.minute % 5) - timedelta(hours=1)
    with (
        CdnApiSimulator(**SIMULATOR) as sim,
        BigQueryEmulator(DEMO / "bigquery") as bigquery_emulator,
        SlackStandIn(SLACK_TOKEN, (env.ALERT_CHANNEL,)) as slack,
    ):
        os.environ["BIGQUERY_EMULATOR_HOST"] = bigquery_emulator.url
        slack_conn = {"conn_type": "slack", "password": SLACK_TOKEN,
                      "extra": {"base_url": slack.api_url}}  # fmt: skip
        settings = {
            "BIGQUERY_EMULATOR_HOST": bigquery_emulator.url,
            "AIRFLOW_CONN_CDN_API": json.dumps(
                {"conn_type": "http", "host": sim.url, "password": TOKEN}
            ),
            "AIRFLOW_CONN_SLACK_API_DEFAULT": json.dumps(slack_conn),
            "CDN_START_DATE": start.isoformat(),
            "CDN_API_MAX_IN_FLIGHT": "16",
        }
        print(f"CDN API simulator  {sim.url}  ({json.dumps(SIMULATOR)})")
        print(f"BigQuery emulator  {bigquery_emulator.url}")
        print(f"Slack stand-in     {slack.api_url}")
        print("starting Airflow (api-server, scheduler, dag-processor) ...", flush=True)
        with AirflowStack(DEMO / "airflow", settings) as airflow:
            print(f"Airflow UI         {airflow.url}  (admin / admin)")
            airflow.set_pool(env.CDN_API_POOL, env.CDN_API_POOL_SLOTS)
            airflow.set_pool(env.BQ_WRITE_POOL, 1)
            for dag_id in DAGS:
                airflow.wait_for_dag(dag_id)
                airflow.set_paused(dag_id, False)
            print(f"unpaused {', '.join(DAGS)}: catchup from {start:%H:%M} UTC")
            wait_with_progress(airflow, 12)
            report(sim.stats(), slack.messages())


def wait_with_progress(airflow: AirflowStack, windows: int) -> None:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        counts, busy = [], False
        for dag_id in DAGS:
            states = [r["state"] for r in airflow.runs(dag_id)]
            done = states.count("success") + states.count("failed")
            busy |= done < len(states)
            counts.append(f"{dag_id} {done}/{len(states)}")
        print("  runs finished: " + ", ".join(counts), flush=True)
        transforms = len(airflow.runs(env.TRANSFORM_DAG_ID))
        if transforms >= windows and not busy:
            return
        time.sleep(5)
    raise TimeoutError("the catchup did not finish in 15 minutes")


# The demo's own read-only queries; table ids come from env.py through table_id().
TOTALS = """
SELECT COUNT(*) AS rows, COUNTIF(complete) AS complete, COUNT(DISTINCT domain) AS domains,
       MIN(minute) AS first, MAX(minute) AS last
FROM `{raw}`"""
AUDIT = "SELECT * FROM `{audit}` ORDER BY window_start"
HOSTILE = "SELECT domain FROM `{raw}` WHERE domain LIKE '%DROP TABLE%' LIMIT 1"
DASHBOARD = """
SELECT COUNT(*) AS rows, COUNTIF(complete) AS complete, SUM(requests) AS requests,
       MIN(minute_local) AS first_local
FROM `{dashboard}`"""
AUDIT_COLUMNS = ("calls", "retries", "complete", "incomplete", "refetched", "filled", "lost")


def report(api_stats: dict, messages: list[dict]) -> None:
    from dag_utils import bigquery

    bq = bigquery.client()
    names = {
        "raw": bigquery.table_id(env.RAW_TABLE),
        "audit": bigquery.table_id(env.AUDIT_TABLE),
        "dashboard": bigquery.table_id(env.DASHBOARD_TABLE),
    }
    totals = next(iter(bq.query_and_wait(TOTALS.format(**names))))
    minutes = totals["rows"] // max(1, totals["domains"])
    print(f"\nraw table {names['raw']}")
    print(
        f"  {totals['rows']} rows = {totals['domains']} domains x {minutes} minutes "
        f"({totals['first']:%H:%M} .. {totals['last']:%H:%M} UTC); {totals['complete']} "
        f"complete, {totals['rows'] - totals['complete']} incomplete"
    )
    print(f"\naudit table {names['audit']}")
    print("  window (UTC) " + "".join(f"{c:>11}" for c in AUDIT_COLUMNS))
    for row in bq.query_and_wait(AUDIT.format(**names)):
        window = f"{row['window_start']:%H:%M}-{row['window_end']:%H:%M}"
        print(f"  {window}  " + "".join(f"{row[c]:>11}" for c in AUDIT_COLUMNS))
    board = next(iter(bq.query_and_wait(DASHBOARD.format(**names))))
    print(f"\ndashboard table {names['dashboard']}")
    print(
        f"  {board['rows']} typed rows, {board['complete']} complete, {board['requests']:,} "
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


if __name__ == "__main__":
    main()
