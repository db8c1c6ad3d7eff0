"""DAG 1 through Airflow, against the CDN API simulator and the BigQuery emulator."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

import env
from dag_utils import raw_ingest, transform
from dag_utils.cdn_api import ENDPOINTS
from dag_utils.tables import EVERY_PARTITION
from dag_utils.windows import Window
from tests.airflow_runs import asset_events, run_dag, task_states
from tests.conftest import API_MAX_IN_FLIGHT, TEST_DATASET, TEST_SIM, TOKEN
from tools.cdn_api_simulator import (
    FLOAT_METRICS,
    HOSTILE_DOMAINS,
    NONFINITE_COLUMN,
    is_nonfinite,
    true_metrics,
)

pytestmark = pytest.mark.usefixtures("airflow_db", "cdn_connection")

DAG_ID = "cdn_raw_ingest"
W0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # first minute of the first window
STEP = timedelta(minutes=5)
DOMAINS = TEST_SIM.domain_list()


def interval_end(window_start: datetime) -> datetime:
    """The data interval end whose run covers the window starting there."""
    return window_start + STEP + env.AVAILABILITY_LAG


def run_windows(first: datetime, count: int) -> list:
    runs = [run_dag(DAG_ID, interval_end(first + i * STEP)) for i in range(count)]
    assert [r.state for r in runs] == ["success"] * count, [task_states(r) for r in runs]
    return runs


def raw_rows(bq) -> dict[tuple[str, int], dict]:
    rows = bq.query_and_wait(
        f"SELECT domain, UNIX_SECONDS(minute) AS minute, metrics, errors, complete, run_id "
        f"FROM `local.{TEST_DATASET}.{env.RAW_TABLE}` WHERE minute >= {EVERY_PARTITION}"
    )
    keyed: dict[tuple[str, int], dict] = {}
    for row in rows:
        key = (row["domain"], row["minute"])
        assert key not in keyed, f"duplicate row {key}"
        keyed[key] = dict(row)
    return keyed


def audit_rows(bq) -> list[dict]:
    query = f"SELECT * FROM `local.{TEST_DATASET}.{env.AUDIT_TABLE}` ORDER BY window_start, run_id"
    return [dict(r) for r in bq.query_and_wait(query)]


def content(rows: dict[tuple[str, int], dict]) -> dict:
    """What a row says about the CDN, without who wrote it when."""
    return {k: (r["metrics"], r["errors"], r["complete"]) for k, r in rows.items()}


def expected_keys(first: datetime, windows: int, domains=DOMAINS) -> set[tuple[str, int]]:
    start = int(first.timestamp())
    return {(d, start + 60 * i) for d in domains for i in range(5 * windows)}


def assert_true(row: dict, domain: str, minute: int) -> None:
    assert row["complete"] and row["errors"] == {}
    for endpoint in ENDPOINTS:
        assert row["metrics"][endpoint] == true_metrics(domain, minute, endpoint, TEST_SIM)


@pytest.mark.matrix  # the ingest window under each Airflow of the support matrix
def test_a_window_run_lands_every_domain_minute_once_with_the_apis_values(sim, bq) -> None:
    (run,) = run_windows(W0, 1)
    rows = raw_rows(bq)
    assert set(rows) == expected_keys(W0, 1)
    for (domain, minute), row in rows.items():
        assert_true(row, domain, minute)
        assert row["run_id"] == run.run_id
    (audit,) = audit_rows(bq)
    assert audit["window_start"] == W0 and audit["window_end"] == W0 + STEP
    assert (audit["complete"], audit["incomplete"], audit["lost"]) == (len(rows), 0, 0)
    assert audit["calls"] == len(rows) * 3  # and one more call listed the domains
    assert sim.stats()["calls"] == 1 + len(rows) * 3
    assert TOKEN not in str(audit)


def test_reruns_and_overlapping_backfills_leave_an_identical_table(sim, bq) -> None:
    run_windows(W0, 4)  # a backfill of 10:00-10:20
    first = content(raw_rows(bq))
    run_windows(W0 + 2 * STEP, 4)  # another, overlapping it on 10:10-10:20
    run_windows(W0, 1)  # and a rerun of the first window
    rows = raw_rows(bq)  # raises on a duplicate
    assert set(rows) == expected_keys(W0, 6)
    assert {k: v for k, v in content(rows).items() if k in first} == first
    assert len(audit_rows(bq)) == 9


def test_a_failed_publish_leaves_the_window_as_it_was_and_a_retry_completes_it(
    sim, bq, bq_proxy
) -> None:
    sim.configure(rate_empty=0.3, empty_calls=1)  # some minutes arrive on the second call
    run_windows(W0, 1)
    before = content(raw_rows(bq))
    assert not all(complete for _, _, complete in before.values())

    bq_proxy.fail_jobs("INSERT INTO", times=2)  # the publish task and its one retry
    failed = run_dag(DAG_ID, interval_end(W0))
    assert failed.state == "failed"
    # watch_pools ends skipped (fail_fast) or succeeded, by when its last poke fell
    assert {k: v for k, v in task_states(failed).items() if k != "watch_pools"} == {
        "plan_shards": "success",
        "fetch_shard": "success",
        "publish_window": "failed",
    }
    assert content(raw_rows(bq)) == before

    bq_proxy.fail_jobs("INSERT INTO", times=1)  # the publish task fails once, its retry succeeds
    retried = run_dag(DAG_ID, interval_end(W0))
    assert retried.state == "success"
    publish = next(ti for ti in retried.get_task_instances() if ti.task_id == "publish_window")
    assert publish.try_number == 2
    rows = raw_rows(bq)
    assert set(rows) == set(before)
    for (domain, minute), row in rows.items():
        assert_true(row, domain, minute)


def test_a_one_hour_backfill_lands_60_minutes_per_domain_within_the_api_budget(sim, bq) -> None:
    started = time.monotonic()
    run_windows(W0, 12)
    elapsed = time.monotonic() - started
    rows = raw_rows(bq)
    assert len(rows) == 60 * len(DOMAINS)
    assert set(rows) == expected_keys(W0, 12)
    assert all(r["complete"] for r in rows.values())
    assert sim.stats()["max_in_flight"] <= API_MAX_IN_FLIGHT
    audits = audit_rows(bq)
    assert len(audits) == 12 and sum(a["complete"] for a in audits) == len(rows)
    print(f"\n1-hour backfill: 12 runs, {len(rows)} rows, {elapsed:.1f} s, "
          f"max in flight {sim.stats()['max_in_flight']} (budget {API_MAX_IN_FLIGHT})")  # fmt: skip


def test_minutes_empty_at_first_are_filled_by_a_later_run_and_complete_ones_not_refetched(
    sim, bq
) -> None:
    sim.configure(rate_empty=0.3, empty_calls=1)
    run_windows(W0, 1)
    first = raw_rows(bq)
    missing = sum(1 for r in first.values() for e in ENDPOINTS if r["metrics"][e] is None)
    late = sum(1 for r in first.values() if not r["complete"])
    assert missing > 0

    calls_before = sim.stats()["calls"]  # (a reset would forget which minutes were asked for)
    run_windows(W0 + STEP, 1)
    # the next window in full, and only the missing endpoints of the earlier one
    assert sim.stats()["calls"] - calls_before == 1 + 5 * len(DOMAINS) * 3 + missing
    rows = raw_rows(bq)
    for key in first:
        assert_true(rows[key], *key)
    audit = audit_rows(bq)[-1]
    assert (audit["refetched"], audit["filled"]) == (late, late)


def test_minutes_still_missing_past_the_horizon_are_reported_lost(sim, bq, monkeypatch) -> None:
    monkeypatch.setattr(env, "LATE_DATA_HORIZON", timedelta(minutes=10))
    sim.configure(rate_empty=0.1)  # these never arrive
    run_windows(W0, 4)
    never = {k for k, r in raw_rows(bq).items() if not r["complete"]}
    first_window = {k for k in never if k[1] < int((W0 + STEP).timestamp())}
    assert first_window
    audits = audit_rows(bq)
    assert [a["lost"] for a in audits] == [0, 0, 0, len(first_window)]
    sample = {(p["domain"], p["minute"]) for p in audits[3]["lost_sample"]}
    assert len(sample) == min(20, len(first_window))


def test_hostile_domain_names_are_stored_verbatim(sim, bq) -> None:
    sim.configure(hostile=True)
    run_windows(W0, 1)
    rows = raw_rows(bq)
    minute = int(W0.timestamp())
    for name in HOSTILE_DOMAINS:
        assert_true(rows[(name, minute)], name, minute)


def test_overlapping_runs_publishing_in_either_order_leave_no_duplicate(sim, bq) -> None:
    """Two runs of one window fetch, then publish one after the other (the publish pool
    has one slot, so that is the only interleaving Airflow allows)."""
    sim.configure(rate_empty=0.3, empty_calls=1)
    window = Window(W0, W0 + STEP)
    (domains,) = raw_ingest.plan_shards(sim.url, TOKEN)
    first, second = (
        [raw_ingest.fetch_shard(window, run, 0, domains, sim.url, TOKEN)] for run in ("r1", "r2")
    )
    assert first[0]["incomplete"] > 0 and second[0]["incomplete"] == 0
    raw_ingest.publish(window, "r2", second)
    raw_ingest.publish(window, "r1", first)  # the older, less complete fetch lands last
    rows = raw_rows(bq)
    assert set(rows) == expected_keys(W0, 1)
    for (domain, minute), row in rows.items():
        assert_true(row, domain, minute)


def test_many_shards_land_every_domain_minute_once_in_one_write(sim, bq, monkeypatch) -> None:
    monkeypatch.setattr(env, "SHARD_SIZE", 4)
    sim.configure(hostile=True, rate_empty=0.2, empty_calls=1)  # 18 domains: 5 shards
    (run,) = run_windows(W0, 1)
    fetches = [ti for ti in run.get_task_instances() if ti.task_id == "fetch_shard"]
    assert len(fetches) == 5
    run_windows(W0 + STEP, 1)  # fills the first window's late minutes, shard by shard
    rows = raw_rows(bq)
    domains = TEST_SIM.domain_list() + list(HOSTILE_DOMAINS)
    assert set(rows) == expected_keys(W0, 2, domains)
    first = [r for (_, minute), r in rows.items() if minute < int((W0 + STEP).timestamp())]
    assert all(r["complete"] for r in first)
    audit = audit_rows(bq)[0]
    assert (audit["domains"], audit["complete"] + audit["incomplete"]) == (18, 90)
    assert len(audit["client_stats"]["shards"]) == 5


def test_a_rejected_token_fails_the_run_at_once_without_retrying_or_leaking_it(
    sim, bq, monkeypatch, capfd
) -> None:
    wrong = "tok-revoked-0000-NEVER-LOG"
    conn = {"conn_type": "http", "host": sim.url, "password": wrong}
    monkeypatch.setenv("AIRFLOW_CONN_CDN_API", json.dumps(conn))
    run = run_dag(DAG_ID, interval_end(W0))
    plan = next(ti for ti in run.get_task_instances() if ti.task_id == "plan_shards")
    assert (plan.state, plan.try_number) == ("failed", 1)  # no task retry either
    assert sim.stats()["by_status"] == {"401": 1}
    assert asset_events(run) == {}  # the raw table did not change
    task_log = "".join(capfd.readouterr())
    assert "rejected the cdn_api token" in task_log
    assert wrong not in task_log


def test_nan_and_infinity_are_stored_as_null_with_the_reason_and_nothing_else_is_lost(
    sim, bq
) -> None:
    """BigQuery's PARSE_JSON refuses NaN and Infinity: one would fail every publish."""
    config = dataclasses.replace(TEST_SIM, rate_nonfinite=0.3)
    sim.configure(rate_nonfinite=config.rate_nonfinite)
    run_windows(W0, 1)
    rows = raw_rows(bq)
    assert set(rows) == expected_keys(W0, 1)
    nonfinite = 0
    for (domain, minute), row in rows.items():
        for endpoint in ENDPOINTS:
            truth = true_metrics(domain, minute, endpoint, TEST_SIM)
            if not is_nonfinite(domain, minute, endpoint, config):
                assert row["metrics"][endpoint] == truth
                continue
            nonfinite += 1
            ratio = FLOAT_METRICS[endpoint]
            assert row["metrics"][endpoint] == truth | {ratio: None, NONFINITE_COLUMN: None}
            reason = f"non_finite: {ratio}, {NONFINITE_COLUMN} stored as null"
            assert (row["errors"][endpoint], row["complete"]) == (reason, False)
    assert nonfinite > 0


def test_a_run_needs_no_right_to_create_the_dataset_when_it_exists(sim, bq, bq_proxy) -> None:
    """The Composer service account has roles/bigquery.dataEditor on the dataset only."""
    bq.create_dataset(f"local.{TEST_DATASET}")
    refused_before = bq_proxy.stats()["refused"]
    bq_proxy.refuse_dataset_creation()
    try:
        run_windows(W0, 1)
        summary = transform.transform_window(raw_ingest.Window(W0, W0 + STEP))
    finally:
        bq_proxy.refuse_dataset_creation(False)
    assert set(raw_rows(bq)) == expected_keys(W0, 1)
    assert summary["row_count"] == summary["complete"] == len(expected_keys(W0, 1))
    assert bq_proxy.stats()["refused"] == refused_before  # creation was never even asked for
