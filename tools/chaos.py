"""`make chaos`: a one-hour catchup of all three DAGs with every fault on at once.

Faults: ~5% transient API errors of every kind, a slow tail, connection resets,
reordered and extra columns, nulls, hostile domain names, minutes that arrive late, one
domain whose cache endpoint fails for good, one BigQuery job failing mid-run, Slack
answering 429 and then down for a while, and the alert DAG paused for part of the hour.
Then it checks the raw table against the simulator's truth and prints a table:
domain-minutes expected / stored correct / wrong / duplicated / pending (still within
the late-data horizon) / lost and reported / lost unreported (must be 0), Slack messages
against incidents, retries by cause, wall time. Last, it searches the Airflow log folder
for both tokens (there must be none). Exit code 1 if an invariant fails.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections import Counter
from contextlib import nullcontext
from datetime import datetime, timedelta

import requests

import env
from dag_utils.tables import DASHBOARD_METRICS, EVERY_PARTITION
from tools.airflow_stack import AirflowStack, catchup_start
from tools.cdn_api_simulator import ENDPOINT_COLUMNS, EXTRA_COLUMN, SimConfig, true_metrics
from tools.chaos_crashes import HEARTBEAT_TIMEOUT_S, Crashes
from tools.local_servers import (
    LOCAL,
    BigQueryEmulator,
    BigQueryFaultProxy,
    CdnApiSimulator,
    SlackStandIn,
)
from tools.postgres import own_database, tables_containing

HOME = LOCAL / "chaos"
API_TOKEN = "chaos-api-token-7f3a"  # noqa: S105 - made up for this run, searched for in logs
SLACK_TOKEN = "chaos-slack-token-91bc"  # noqa: S105
TOKENS = (API_TOKEN, SLACK_TOKEN)
BROKEN = "cache:d00003.example.net"  # fails for good: its minutes end up lost


def simulator(domains: int) -> SimConfig:
    return SimConfig(
        domains=domains, hostile=True, token=API_TOKEN, capacity=16, latency_ms=30,
        available_after_s=0, rate_429=0.01, retry_after_s=1, rate_5xx=0.01, rate_reset=0.01,
        rate_rtcode=0.01, rate_slow=0.01, slow_ms=2000, rate_empty=0.05, empty_calls=2,
        rate_reorder=0.1, rate_null=0.02, failing=(BROKEN,),
    )  # fmt: skip


ENDPOINTS = tuple(ENDPOINT_COLUMNS)
DAGS = (env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID)
# The check's own read-only queries; table ids come from env.py through table_ids().
DASHBOARD_ROWS = "SELECT * FROM `{dashboard}` WHERE minute_utc >= <every>".replace(
    "<every>", EVERY_PARTITION
)
RAW_ROWS = (
    "SELECT domain, UNIX_SECONDS(minute) AS minute, metrics, complete "
    "FROM `{raw}` WHERE minute >= <every>"
).replace("<every>", EVERY_PARTITION)
AUDIT_ROWS = "SELECT * FROM `{audit}`"


def main() -> int:
    return 0 if run()["ok"] else 1


def run(
    windows: int = 12, domains: int = 24, horizon_min: int = 20, home=HOME, database=None
) -> dict:
    """The chaos run over the last `windows` windows; its table, and whether it held.

    `database`: the metadata DB's URL; by default a PostgreSQL server of its own in `home`.
    """
    shutil.rmtree(home, ignore_errors=True)
    sim_config = simulator(domains)
    start = catchup_start(5 * windows)
    sim_config = with_spike(sim_config, start, windows)
    started = time.monotonic()
    sim_args = {k: v for k, v in sim_config.__dict__.items() if k != "failing"}
    previous_bigquery = os.environ.get("BIGQUERY_EMULATOR_HOST")
    with (
        CdnApiSimulator(**sim_args, failing=list(sim_config.failing)) as sim,
        BigQueryEmulator(home / "bigquery") as emulator,
        BigQueryFaultProxy(emulator.url) as proxy,
        SlackStandIn(SLACK_TOKEN, (env.ALERT_CHANNEL,)) as slack,
        nullcontext(database) if database else own_database(home / "postgres") as database,
    ):
        os.environ["BIGQUERY_EMULATOR_HOST"] = proxy.url
        slack_conn = {"conn_type": "slack", "password": SLACK_TOKEN,
                      "extra": {"base_url": slack.api_url}}  # fmt: skip
        settings = {
            "BIGQUERY_EMULATOR_HOST": proxy.url,
            "AIRFLOW_CONN_CDN_API": json.dumps(
                {"conn_type": "http", "host": sim.url, "password": API_TOKEN}
            ),
            "AIRFLOW_CONN_SLACK_API_DEFAULT": json.dumps(slack_conn),
            "CDN_START_DATE": start.isoformat(),
            "CDN_API_MAX_IN_FLIGHT": "16",
            "CDN_LATE_DATA_HORIZON_MIN": str(horizon_min),
            "CDN_RETRY_DELAY_S": "5",
            "CDN_API_BACKOFF_S": "0.25",  # production's, whatever the caller's environment
            # A publish may take the injected job failure and three kills (the crashes may
            # all fall on one task's tries): four retries (pytest's own default is one).
            "CDN_TASK_RETRIES": "4",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        }
        try:
            with AirflowStack(
                home / "airflow", settings, database=database, parallelism=4
            ) as airflow:
                airflow.provision()
                for dag_id in DAGS:
                    airflow.wait_for_dag(dag_id)
                proxy.fail_jobs("INSERT INTO", times=1)  # one BigQuery job fails mid-run
                slack.configure(rate_limit_next=2, retry_after_s=1)
                airflow.set_paused(env.INGEST_DAG_ID, False)
                airflow.set_paused(env.TRANSFORM_DAG_ID, False)  # alerting paused for a while
                crashes = start_crashes(airflow, proxy, windows)
                script(airflow, slack, windows, crashes)
                wall = time.monotonic() - started
                ran = len(airflow.runs(env.INGEST_DAG_ID))
                failed = {d: [r["state"] for r in airflow.runs(d)].count("failed") for d in DAGS}
                recovered = crashes.recoveries(), crashes.all_recovered()
            return verify(sim_config, start, ran, horizon_min, slack.messages(), wall, failed,
                          proxy.stats(), home, database, recovered)  # fmt: skip
        finally:
            if previous_bigquery is None:
                os.environ.pop("BIGQUERY_EMULATOR_HOST", None)
            else:
                os.environ["BIGQUERY_EMULATOR_HOST"] = previous_bigquery


def start_crashes(airflow: AirflowStack, proxy: BigQueryFaultProxy, windows: int) -> Crashes:
    """The process crashes (tools/chaos_crashes.py); the scheduler restart half-way."""
    from dag_utils import bigquery

    crashes = Crashes(airflow, proxy, bigquery.table_ids()["raw"], restart_after=windows // 2)
    crashes.start()
    return crashes


SPIKED = "d00005.example.net"  # a 15-minute 5xx spike: one rule incident


def with_spike(sim: SimConfig, start: datetime, windows: int) -> SimConfig:
    """The spike starts at the middle window of the run (windows lag by AVAILABILITY_LAG)."""
    at = start - env.AVAILABILITY_LAG + timedelta(minutes=5 * (windows // 2))
    return sim.updated({"spikes": [f"{SPIKED}:{int(at.timestamp())}:15:5xx"]})


def dashboard_lines(sim: SimConfig, bq, raw_rows: list, messages: list, lost: set) -> dict:
    """The dashboard against the raw table and the truth; domains paged for being late."""
    from dag_utils import alerting, bigquery

    rows = bq.query_and_wait(DASHBOARD_ROWS.format(**bigquery.table_ids()))
    board = {(r["domain"], int(r["minute_utc"].timestamp())): dict(r) for r in rows}
    behind = wrong = 0
    for r in raw_rows:
        shown = board.get((r["domain"], r["minute"]))
        if shown is None or shown["complete"] != r["complete"]:
            behind += 1
            continue
        if r["complete"]:
            truth = {e: true_metrics(r["domain"], r["minute"], e, sim) for e in ENDPOINTS}
            wrong += any(
                shown[column] != truth[endpoint][metric]
                for column, endpoint, metric, _ in DASHBOARD_METRICS
            )
    told = "\n".join(
        line for m in messages for line in m["text"].split("\n") if "domain-minutes missing" in line
    )
    named = {d for d in sim.domain_list() if alerting.escape(d) in told}
    return {
        "dashboard rows behind raw (must be 0)": behind,
        "dashboard complete rows != truth (must be 0)": wrong,
        "domains named in messages that were only late (must be 0)": len(named - lost),
    }


def script(airflow: AirflowStack, slack: SlackStandIn, windows: int, crashes: Crashes) -> None:
    """Unpause alerting a third of the way in; Slack goes down for the middle third."""
    steps = [  # (after this many transform runs have finished, do this)
        (windows // 3, lambda: airflow.set_paused(env.ALERT_DAG_ID, False)),
        (windows // 2, lambda: slack.configure(down=True)),
        (3 * windows // 4, lambda: slack.configure(down=False)),
    ]
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        try:
            states = {d: [r["state"] for r in airflow.runs(d)] for d in DAGS}
        except requests.RequestException:  # the API server too busy to answer: poll again
            time.sleep(5)
            continue
        finished = sum(s in ("success", "failed") for s in states[env.TRANSFORM_DAG_ID])
        while steps and finished >= steps[0][0]:
            steps.pop(0)[1]()
        busy = any(s not in ("success", "failed") for runs in states.values() for s in runs)
        print("  " + ", ".join(f"{d} {sum(s in ('success', 'failed') for s in r)}/{len(r)}"
                               for d, r in states.items()), flush=True)  # fmt: skip
        crashes.check()
        caught_up = len(states[env.TRANSFORM_DAG_ID]) >= windows and not busy
        if caught_up and not steps and crashes.finished:
            return
        time.sleep(5)
    raise TimeoutError("the chaos run did not finish in 20 minutes")


def verify(
    sim, start, windows, horizon_min, messages, wall, failed, proxy_stats, home, database, crashes
) -> dict:
    from dag_utils import bigquery

    bq = bigquery.client()
    ids = bigquery.table_ids()
    rows = list(bq.query_and_wait(RAW_ROWS.format(**ids)))
    audits = list(bq.query_and_wait(AUDIT_ROWS.format(**ids)))
    first = int((start - env.AVAILABILITY_LAG).timestamp())
    minutes = range(first, first + windows * 300, 60)
    expected = {(d, m) for d in sim.domain_list() for m in minutes}
    seen = Counter((r["domain"], r["minute"]) for r in rows)
    correct = wrong = 0
    for r in rows:
        if r["complete"]:
            served = {e: {k: v for k, v in r["metrics"][e].items() if k != EXTRA_COLUMN}
                      for e in ("traffic", "status", "cache")}  # fmt: skip
            truth = {e: true_metrics(r["domain"], r["minute"], e, sim) for e in served}
            correct += served == truth
            wrong += served != truth
    last_window_start = first + (windows - 1) * 300
    horizon_edge = last_window_start - horizon_min * 60  # minutes before it have passed
    incomplete = {(r["domain"], r["minute"]) for r in rows if not r["complete"]}
    passed = {k for k in incomplete if k[1] < horizon_edge}
    reported = sum(a["lost"] for a in audits)
    missing = expected - set(seen)
    unreported = len(missing) + max(0, len(passed) - reported)
    retries = Counter()
    for a in audits:
        for shard in a["client_stats"]["shards"]:
            retries.update(shard["retries_by_cause"])
    table = {
        "domain-minutes expected": len(expected),
        "stored correct (complete, = truth)": correct,
        "stored wrong": wrong,
        "duplicated": sum(n - 1 for n in seen.values() if n > 1),
        "pending (incomplete, within horizon)": len(incomplete - passed),
        "lost and reported in the audit": f"{len(passed)} (audit lost total {reported})",
        "lost unreported (must be 0)": unreported,
        "Slack messages / incidents": f"{len(messages)} / 2 (a cache fails all hour; a spike)",
        **dashboard_lines(sim, bq, rows, messages, {d for d, _ in incomplete | missing}),
        "API retries by cause": dict(sorted(retries.items())),
        "BigQuery jobs failed by injection": proxy_stats["failed"],
        "DAG runs failed (ingest, transform, alert)": tuple(failed.values()),
        "wall time": f"{wall:.0f} s",
    }
    recoveries, recovered = crashes
    table |= recoveries
    print(f"\nchaos: {windows} windows x {len(sim.domain_list())} domains, every fault on")
    for label, value in table.items():
        print(f"  {label:<44} {value}")
    for message in messages:
        print("  slack> " + message["text"].replace("\n", "\n  slack> "))
    leaks = [str(p) for p in (home / "airflow").rglob("*") if p.is_file() and _contains_token(p)]
    leaks += [f"metadata DB table {t}" for t in tables_containing(database, TOKENS)]
    print(f"  token values found in Airflow's folder and DB: {len(leaks)} {leaks[:3]}")
    ok = wrong == 0 and table["duplicated"] == 0 and unreported == 0 and not leaks and recovered
    ok = ok and not any(v for k, v in table.items() if k.endswith("(must be 0)"))
    return {**table, "messages": messages, "leaks": leaks, "crashes recovered": recovered, "ok": ok}


def _contains_token(path) -> bool:
    """Logs and task output; the metadata DB (XCom, rendered fields) is searched by table."""
    if path.name.startswith("."):  # the stack's own JWT and API secrets, not tokens
        return False
    text = path.read_bytes()
    return any(token.encode() in text for token in TOKENS)


if __name__ == "__main__":
    sys.exit(main())
