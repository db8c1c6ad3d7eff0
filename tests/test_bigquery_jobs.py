"""A killed task's BigQuery job: labelled, found by the next writer, cancelled before it
writes; a task's on_kill cancels its own. The fault proxy keeps the write job running
after its caller is gone (tools/bigquery_held_jobs.py), as BigQuery does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core.exceptions import BadRequest

import env
from dag_utils import bigquery, bigquery_jobs, raw_ingest, tables, transform
from dag_utils.windows import Window
from tests.airflow_runs import dag_bag
from tests.conftest import TEST_DATASET, TOKEN
from tests.test_raw_ingest_dag import expected_keys, raw_rows
from tools.local_servers import REPO, BigQueryFaultProxy

W0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WINDOW = Window(W0, W0 + timedelta(minutes=5))
RUN = "scheduled__2026-11-23T10:10:00+00:00"


def context(dag_id: str, task_id: str, try_number: int) -> bigquery_jobs.JobContext:
    return bigquery_jobs.JobContext(dag_id, task_id, W0, try_number)


def wait_for(ready: Callable[[], object], timeout: float = 120) -> object:
    """Waits for a condition, not a duration; the timeout only stops a hung test."""
    deadline = time.monotonic() + timeout
    while not (value := ready()):
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.05)
    return value


def held_job(proxy: BigQueryFaultProxy) -> tuple[str, dict]:
    """The job the proxy holds running (the fixture ended any earlier one)."""
    running = lambda: [(i, j) for i, j in proxy.stats()["held_jobs"].items() if not j["ended"]]  # noqa: E731
    (held,) = wait_for(running)
    return held


def killed_mid_job(
    proxy: BigQueryFaultProxy, call: str, ctx: bigquery_jobs.JobContext, shards: list[dict] = ()
) -> str:
    """Run `call` (Python, with `window`, `run`, `shards` defined) as try 1 in a process of
    its own; SIGKILL it once its write job is running. The job's id."""
    code = f"""
import json, sys
from datetime import datetime
from dag_utils import bigquery_jobs, raw_ingest, transform
from dag_utils.windows import Window
args = json.loads(sys.argv[1])
window = Window(*map(datetime.fromisoformat, args["window"]))
run, shards = args["run"], args["shards"]
ctx = bigquery_jobs.JobContext(args["dag"], args["task"], window.start, args["try"])
with bigquery_jobs.jobs_for(ctx):
    {call}
"""
    args = {"window": [WINDOW.start.isoformat(), WINDOW.end.isoformat()], "run": RUN,
            "shards": list(shards), "dag": ctx.dag_id, "task": ctx.task_id,
            "try": ctx.try_number}  # fmt: skip
    task = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(args)], cwd=REPO, env=os.environ
    )
    try:
        job_id, job = held_job(proxy)
    finally:
        task.kill()
        task.wait()
    assert job["labels"] == ctx.labels()
    return job_id


@pytest.fixture
def fresh_proxy(bq_proxy: BigQueryFaultProxy):
    """The session's proxy with no held job before or after the test."""
    bq_proxy.finish_held_jobs()
    yield bq_proxy
    bq_proxy.finish_held_jobs()


def fetched(sim) -> list[dict]:
    (domains,) = raw_ingest.plan_shards(sim.url, TOKEN)
    return [raw_ingest.fetch_shard(WINDOW, RUN, 0, domains, sim.url, TOKEN)]


def test_a_publish_killed_while_its_job_runs_on_is_cancelled_by_the_retry_before_it_writes(
    sim, bq, fresh_proxy
) -> None:
    shards = fetched(sim)
    fresh_proxy.hold_job(f"INSERT INTO `{bigquery.table_ids()['raw']}`")
    publish = context(env.INGEST_DAG_ID, "publish_window", 1)
    dead = killed_mid_job(fresh_proxy, "raw_ingest.publish(window, run, shards)", publish, shards)

    with bigquery_jobs.jobs_for(context(env.INGEST_DAG_ID, "publish_window", 2)):
        raw_ingest.publish(WINDOW, RUN, shards)  # the window's first write
    committed = fresh_proxy.finish_held_jobs()  # had nothing cancelled it, it commits now

    rows = raw_rows(bq)  # raises on a duplicate (domain, minute)
    assert set(rows) == expected_keys(W0, 1)
    assert committed == []
    assert fresh_proxy.stats()["held_jobs"][dead]["ended"] == "cancelled"


def dashboard_keys(bq) -> list[tuple[str, datetime]]:
    table = f"local.{TEST_DATASET}.{env.DASHBOARD_TABLE}"
    return [
        (r["domain"], r["minute_utc"])
        for r in bq.query_and_wait(
            f"SELECT * FROM `{table}` WHERE minute_utc >= {tables.EVERY_PARTITION}"
        )
    ]


def test_a_transform_killed_while_its_job_runs_on_is_cancelled_by_the_retry_before_it_writes(
    sim, bq, fresh_proxy
) -> None:
    raw_ingest.publish(WINDOW, RUN, fetched(sim))
    fresh_proxy.hold_job(f"INSERT INTO `{bigquery.table_ids()['dashboard']}`")
    transform_try = context(env.TRANSFORM_DAG_ID, "transform_window", 1)
    dead = killed_mid_job(fresh_proxy, "transform.transform_window(window)", transform_try)

    with bigquery_jobs.jobs_for(context(env.TRANSFORM_DAG_ID, "transform_window", 2)):
        summary = transform.transform_window(WINDOW)  # the window's first write
    committed = fresh_proxy.finish_held_jobs()

    keys = dashboard_keys(bq)
    assert len(keys) == len(set(keys)) == len(expected_keys(W0, 1)) == summary["row_count"]
    assert committed == []
    assert fresh_proxy.stats()["held_jobs"][dead]["ended"] == "cancelled"


def test_a_job_says_which_task_try_and_window_started_it_and_has_a_job_timeout(bq) -> None:
    with bigquery_jobs.jobs_for(context("Dev_CDN.raw-ingest", "publish_window", 3)):
        bigquery.query(bq, "SELECT 1 AS one", {})
    (job,) = [j for j in bq.list_jobs(max_results=20) if j.labels.get("try") == "3"]
    assert job.labels == {"dag": "dev_cdn_raw-ingest", "task": "publish_window",
                          "window_start": "20261123t1000", "try": "3"}  # fmt: skip
    assert job.job_id.startswith("dev_cdn_raw-ingest_publish_window_20261123t1000_try3_")
    assert int(job.configuration.job_timeout_ms) == env.BQ_JOB_TIMEOUT.total_seconds() * 1000
    assert env.DEFAULT_ARGS["execution_timeout"] > env.BQ_JOB_TIMEOUT


def test_bigquery_refuses_a_label_it_would_refuse_in_production(bq) -> None:
    from google.cloud.bigquery import QueryJobConfig

    for labels in ({"Window": "x"}, {"window": "10:00"}, {"w": "x" * 64}):
        with pytest.raises(BadRequest, match=r"[Ll]abel"):
            bq.query_and_wait("SELECT 1", job_config=QueryJobConfig(labels=labels))


@pytest.mark.usefixtures("airflow_db")
def test_a_tasks_on_kill_cancels_the_job_it_waits_for(bq, fresh_proxy) -> None:
    bigquery.ensure_tables(bq, tables.RAW)
    raw = bigquery.table_ids()["raw"]
    # A write of the raw table's (the check of sent SQL analyzes it against prod's tables).
    script = (
        "BEGIN TRANSACTION;\n"
        f"INSERT INTO `{raw}` (minute, domain, complete, run_id, fetched_at)\n"
        "VALUES (@minute, 'killed.example.net', FALSE, 'killed', @minute);\n"
        "COMMIT TRANSACTION;"
    )
    fresh_proxy.hold_job(f"INSERT INTO `{raw}`")
    failures: list[BaseException] = []

    def task() -> None:
        try:
            with bigquery_jobs.jobs_for(context(env.INGEST_DAG_ID, "publish_window", 1)):
                bigquery.query(bigquery.client(), script, {"minute": W0})
        except BaseException as error:  # noqa: BLE001 - what the task saw
            failures.append(error)

    waiting = threading.Thread(target=task)
    waiting.start()
    job_id, _ = held_job(fresh_proxy)
    dag_bag().dags[env.INGEST_DAG_ID].get_task("publish_window").on_kill()
    waiting.join(timeout=120)

    assert fresh_proxy.stats()["held_jobs"][job_id]["ended"] == "cancelled"
    assert [type(e) for e in failures] == [BadRequest] and "cancelled" in str(failures[0])
    assert raw_rows(bq) == {}


def test_the_cost_per_window_query_is_googlesql_against_information_schema_jobs() -> None:
    from tools.googlesql import GoogleSql, bigquery_type
    from tools.job_costs import COST_BY_WINDOW, JOBS_SCHEMA, JOBS_VIEW

    analyzer = GoogleSql({JOBS_VIEW: JOBS_SCHEMA})
    try:
        assert analyzer.analyze_script(COST_BY_WINDOW, {"days": bigquery_type("INT64")}) == 1
    finally:
        analyzer.close()
