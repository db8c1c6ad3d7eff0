"""DAGs 2 and 3 through Airflow: the dashboard's numbers, and what reaches Slack."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import env
from dag_utils.tables import DASHBOARD_METRICS, EVERY_PARTITION
from dag_utils.windows import Window, window_conf
from tests.airflow_runs import asset_events, dag_bag, run_dag, task_states
from tests.conftest import TEST_DATASET, TEST_SIM
from tools.cdn_api_simulator import true_metrics

pytestmark = pytest.mark.usefixtures("airflow_db", "cdn_connection", "alert_state")

W0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)


def interval_end(i: int) -> datetime:
    return W0 + (i + 1) * STEP + env.AVAILABILITY_LAG


def ingest_and_transform(i: int) -> list:
    runs = [
        run_dag(dag_id, interval_end(i)) for dag_id in (env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID)
    ]
    assert [r.state for r in runs] == ["success"] * 2, [task_states(r) for r in runs]
    return runs


def alert(i: int, live: bool = True):
    window = Window(W0 + i * STEP, W0 + (i + 1) * STEP)
    dag = dag_bag().dags[env.ALERT_DAG_ID]
    return dag.test(logical_date=interval_end(i), run_conf=window_conf(window, live))


def test_the_dashboard_has_the_apis_numbers_typed_with_utc_and_seoul_minutes(sim, bq) -> None:
    ingest_and_transform(0)
    table = f"local.{TEST_DATASET}.{env.DASHBOARD_TABLE}"
    rows = list(bq.query_and_wait(f"SELECT * FROM `{table}` WHERE minute_utc >= {EVERY_PARTITION}"))
    assert len(rows) == 5 * len(TEST_SIM.domain_list())
    for row in rows:
        minute = int(row["minute_utc"].timestamp())
        assert row["minute_local"] == row["minute_utc"].replace(tzinfo=None) + timedelta(hours=9)
        assert row["complete"]
        truth = {
            e: true_metrics(row["domain"], minute, e, TEST_SIM)
            for e in ("traffic", "status", "cache")
        }
        for column, endpoint, metric, _ in DASHBOARD_METRICS:
            assert row[column] == truth[endpoint][metric], (column, row["domain"])


@pytest.mark.matrix
def test_a_window_leaves_asset_events_for_the_tables_it_wrote(sim, bq) -> None:
    ingest, transform = ingest_and_transform(1)
    window = {
        "window_start": "2026-11-23T10:05:00+00:00",
        "window_end": "2026-11-23T10:10:00+00:00",
    }
    table = f"bigquery://local/{TEST_DATASET}/{{}}".format
    assert asset_events(ingest) == {table(env.RAW_TABLE): window, table(env.AUDIT_TABLE): window}
    assert asset_events(transform) == {table(env.DASHBOARD_TABLE): window}


def dashboard_rows(bq, window: int) -> dict[tuple[str, int], dict]:
    table = f"local.{TEST_DATASET}.{env.DASHBOARD_TABLE}"
    start = W0 + window * STEP
    rows = bq.query_and_wait(
        f"SELECT * FROM `{table}` WHERE minute_utc >= '{start.isoformat()}' "
        f"AND minute_utc < '{(start + STEP).isoformat()}'"
    )
    return {(r["domain"], int(r["minute_utc"].timestamp())): dict(r) for r in rows}


def assert_true_values(rows: dict[tuple[str, int], dict]) -> None:
    for (domain, minute), row in rows.items():
        endpoints = ("traffic", "status", "cache")
        truth = {e: true_metrics(domain, minute, e, TEST_SIM) for e in endpoints}
        for column, endpoint, metric, _ in DASHBOARD_METRICS:
            assert row[column] == truth[endpoint][metric], (column, domain, minute)


def test_a_minute_filled_by_a_later_ingest_run_becomes_complete_on_the_dashboard(sim, bq) -> None:
    sim.configure(rate_empty=0.1, empty_calls=1)  # empty at first fetch, there at the next
    ingest_and_transform(0)
    late = {k for k, row in dashboard_rows(bq, 0).items() if not row["complete"]}
    assert late, "the simulator should have left some minutes empty at first fetch"
    ingest_and_transform(1)  # refetches window 0's late minutes
    rows = dashboard_rows(bq, 0)
    assert len(rows) == 5 * len(TEST_SIM.domain_list())
    assert all(rows[k]["complete"] for k in late)
    assert_true_values(rows)


def test_a_window_transformed_before_its_ingest_catches_up_with_the_next_transform(sim, bq) -> None:
    early = run_dag(env.TRANSFORM_DAG_ID, interval_end(0), mark_success="wait_for_ingest")
    assert early.state == "success", task_states(early)
    assert dashboard_rows(bq, 0) == {}  # nothing was there yet
    ingest_and_transform(1)
    assert dashboard_rows(bq, 0) == {}  # window 0's ingest has still not run
    assert run_dag(env.INGEST_DAG_ID, interval_end(0)).state == "success"
    ingest_and_transform(2)
    rows = dashboard_rows(bq, 0)
    assert len(rows) == 5 * len(TEST_SIM.domain_list())
    assert all(row["complete"] for row in rows.values())
    assert_true_values(rows)


def test_minutes_filled_within_the_grace_page_no_one_and_lost_ones_are_named_once(
    sim, bq, slack
) -> None:
    late, lost = TEST_SIM.domain_list()[:2]
    sim.configure(rate_empty=0.1, empty_calls=2, failing=[f"traffic:{lost}"])  # 3rd fetch works
    for i in range(4):
        ingest_and_transform(i)
        alert(i)
    (message,) = slack.messages()  # window 2's check judges window 0, 3's judges window 1
    assert message["channel"] == env.ALERT_CHANNEL
    lines = message["text"].split("\n")
    assert lines[0] == ":rotating_light: CDN data missing for 19:00-19:05 KST (10:00-10:05 UTC)"
    assert lines[1].startswith(f"5 of 30 domain-minutes missing: 1 domain ({lost}); 5 minutes")
    assert late not in message["text"]


def test_three_windows_with_gaps_make_one_message_and_recovery_one_more(sim, bq, slack) -> None:
    sim.configure(rate_empty=0.05)  # minutes that never arrive
    for i in range(5):
        ingest_and_transform(i)
        alert(i)
    assert [m["text"].split("\n")[0] for m in slack.messages()] == [
        ":rotating_light: CDN data missing for 19:00-19:05 KST (10:00-10:05 UTC)"
    ]
    sim.configure(rate_empty=0.0)
    ingest_and_transform(5)  # refetches windows 0 to 4: window 3, judged next, is complete
    alert(5)
    texts = [m["text"] for m in slack.messages()]
    assert texts[1:] == [
        ":white_check_mark: CDN data complete again for 19:15-19:20 KST (10:15-10:20 UTC)"
    ]
    print("\nSlack stand-in received:\n" + "\n---\n".join(texts))


def test_a_backfill_with_gaps_posts_one_summary_at_the_next_live_check(sim, bq, slack) -> None:
    sim.configure(rate_empty=0.05)
    for i in range(8):
        ingest_and_transform(i)
        alert(i, live=False)
    assert slack.messages() == []
    sim.configure(rate_empty=0.0)
    ingest_and_transform(8)
    alert(8)  # the first live check sums the backfill up
    (summary,) = slack.messages()
    assert summary["text"].startswith(
        ":information_source: Catch-up: 6 windows between 19:10-19:40 KST (10:10-10:40 UTC)"
    )


def test_a_hostile_domain_reaches_slack_inert(sim, bq, slack) -> None:
    hostile = "<https://evil.example|login>.example.net"
    sim.configure(domains=1, hostile=True, failing=[f"cache:{hostile}"])
    for i in range(3):
        ingest_and_transform(i)
    alert(2)
    (message,) = slack.messages()
    assert message["text"] == (
        ":rotating_light: CDN data missing for 19:00-19:05 KST (10:00-10:05 UTC)\n"
        "5 of 65 domain-minutes missing: "
        "1 domain (&lt;https://evil.example|login&gt;.example.net); "
        "5 minutes (19:00, 19:01, 19:02, 19:03, 19:04 KST (10:00, 10:01, 10:02, 10:03, 10:04 UTC))"
    )
    assert [b["text"]["text"] for b in message["blocks"]] == message["text"].split("\n")


def test_a_5xx_spike_opens_one_rule_incident_for_its_domain_only(sim, bq, slack) -> None:
    domain = TEST_SIM.domain_list()[3]
    start = int((W0 + STEP).timestamp())
    sim.configure(spikes=[f"{domain}:{start}:5:5xx"])
    for i in range(3):
        ingest_and_transform(i)
        alert(i)
    texts = [m["text"] for m in slack.messages()]
    assert texts == [
        ":rotating_light: 5xx errors (error ratio above 10% for 3 minutes in a row) for "
        f"19:05-19:10 KST (10:05-10:10 UTC): {domain} (30.0%)",
        ":white_check_mark: 5xx errors back to normal for 19:10-19:15 KST (10:10-10:15 UTC): "
        f"{domain}",
    ]


def test_slack_down_fails_the_alert_task_and_leaves_the_data_alone(sim, bq, slack) -> None:
    sim.configure(rate_empty=0.05)
    slack.configure(down=True)
    for i in range(3):
        ingest_and_transform(i)  # asserts the transform succeeded
    run = alert(2)
    assert task_states(run) == {"check_window": "success", "notify": "failed"}
    assert slack.messages() == []
    slack.configure(down=False)
    alert(2)  # the incident was not recorded as told, so the next check tells it
    assert len(slack.messages()) == 1


def notify_fails_at_once(sim, slack, capfd) -> str:
    """Windows with gaps, then their check: notify fails on its first try and posts
    nothing. The test's output (the task log)."""
    sim.configure(rate_empty=0.05)
    for i in range(3):
        ingest_and_transform(i)
    run = alert(2)
    notify = next(ti for ti in run.get_task_instances() if ti.task_id == "notify")
    assert (notify.state, notify.try_number) == ("failed", 1)  # tests allow one task retry
    assert slack.messages() == []
    return "".join(capfd.readouterr())


def test_a_rejected_slack_token_fails_notify_at_once_without_retrying_or_leaking_it(
    sim, bq, slack, monkeypatch, capfd
) -> None:
    wrong = "revoked-slack-token-NEVER-LOG"
    conn = {"conn_type": "slack", "password": wrong, "extra": {"base_url": slack.api_url}}
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_API_DEFAULT", json.dumps(conn))
    task_log = notify_fails_at_once(sim, slack, capfd)
    assert "Slack rejected the slack_api_default token" in task_log
    assert wrong not in task_log


def test_a_channel_the_app_is_not_in_fails_notify_at_once_naming_the_fix(
    sim, bq, slack, capfd
) -> None:
    slack.set_channel(env.ALERT_CHANNEL, is_member=False)  # installed, never invited
    task_log = notify_fails_at_once(sim, slack, capfd)
    assert f"Slack refuses posts to {env.ALERT_CHANNEL}: not_in_channel" in task_log
    assert "`/invite @<app>` in the channel" in task_log and "chat:write.public" in task_log


@pytest.mark.matrix  # Airflow 3.2 only logs a rejected Variable write
def test_an_alert_state_write_that_does_not_stick_fails_notify(
    sim, bq, slack, monkeypatch, capfd
) -> None:
    # A variable of the same key outside the metadata DB shadows every write to it, as a
    # rejected write does on Airflow 3.2 (which only logs it): the state would be lost.
    monkeypatch.setenv("AIRFLOW_VAR_" + env.ALERT_STATE_VARIABLE.upper(), "{}")
    sim.configure(rate_empty=0.05)
    ingest_and_transform(0)
    run = alert(0)
    assert task_states(run) == {"check_window": "success", "notify": "failed"}
    assert f"the Airflow Variable '{env.ALERT_STATE_VARIABLE}' did not keep" in "".join(
        capfd.readouterr()
    )
