"""`make provision` against a bare local Airflow: to a working window, then nothing to do."""

from __future__ import annotations

import pytest

import env
from dag_utils import bigquery, tables
from tests.conftest import TEST_DATASET
from tools import provision_checks
from tools.airflow_stack import PASSWORD, USER, AirflowStack, catchup_start
from tools.provision import AirflowApi, Outcome, local_token, print_outcome, provision

pytestmark = pytest.mark.usefixtures("cdn_connection", "slack")


@pytest.mark.timeout(900)
def test_provision_brings_a_bare_airflow_to_a_working_window_and_is_idempotent(
    sim, bq, slack, tmp_path, monkeypatch, metadata_db
) -> None:
    settings = {
        "CDN_START_DATE": catchup_start(5).isoformat(),
        "CDN_API_POOL_SLOTS": "2",
    }
    with AirflowStack(tmp_path / "airflow", settings, database=metadata_db) as airflow:
        slack.set_channel(env.ALERT_CHANNEL, is_member=False)  # installed, not invited
        refused = airflow.provision(dry_run=True)
        assert f"PROBLEM Slack: Slack refuses posts to {env.ALERT_CHANNEL}: not_in_channel" in (
            refused
        )
        slack.set_channel(env.ALERT_CHANNEL, is_member=True)
        plan = airflow.provision(dry_run=True)
        assert f"ok    Slack: the app is a member of {env.ALERT_CHANNEL}" in plan
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


def test_the_slack_check_reports_a_token_that_cannot_post_to_the_alert_channel(
    slack, bq, capsys
) -> None:
    slack.set_channel(env.ALERT_CHANNEL, is_member=False)
    outcome = Outcome()
    provision_checks.slack_check(outcome, secrets_project=None)
    print_outcome(outcome, dry_run=True)
    report = capsys.readouterr().out
    assert f"PROBLEM Slack: Slack refuses posts to {env.ALERT_CHANNEL}: not_in_channel" in report
    assert "`/invite @<app>` in the channel" in report
    slack.configure(scopes=["chat:write", "chat:write.public", "channels:read", "groups:read"])
    allowed = Outcome()
    provision_checks.slack_check(allowed, secrets_project=None)
    assert allowed.problems == []
    assert allowed.unchanged == [
        f"Slack: {env.ALERT_CHANNEL} is public and the token has chat:write.public"
    ]
    assert slack.messages() == []


def test_the_slack_check_is_skipped_with_a_warning_when_the_token_is_not_readable(
    monkeypatch,
) -> None:
    monkeypatch.delenv(f"AIRFLOW_CONN_{env.SLACK_CONN_ID.upper()}")
    outcome = Outcome()
    provision_checks.slack_check(outcome, secrets_project=None)
    assert outcome.problems == [] and len(outcome.warnings) == 1
    assert outcome.warnings[0].startswith("Slack not checked")


def test_the_dataset_check_reports_default_expirations_that_differ_from_the_bundles(bq) -> None:
    from google.cloud import bigquery as google_bigquery

    dataset = google_bigquery.Dataset(f"local.{TEST_DATASET}")
    dataset.default_partition_expiration_ms = 60 * provision_checks.DAY_MS
    dataset.default_table_expiration_ms = 90 * provision_checks.DAY_MS
    bq.create_dataset(dataset)
    bigquery.ensure_tables(bq, tables.RAW, tables.AUDIT, tables.DASHBOARD)
    outcome = Outcome()
    provision_checks.dataset_check(bq, outcome)
    days = env.RAW_RETENTION_DAYS
    assert outcome.warnings == [
        f"dataset local.{TEST_DATASET}: default partition expiration 60 days, the bundle's "
        f"{env.RAW_TABLE} {days} days, {env.AUDIT_TABLE} {days} days, {env.DASHBOARD_TABLE} "
        f"{days} days: the bundle sets its own on each of its tables; any other partitioned "
        "table made in the dataset gets the default",
        f"dataset local.{TEST_DATASET}: default table expiration 90 days: the bundle removes "
        "it from its tables (it would drop the whole table); any other table made there expires",
    ]
    assert outcome.unchanged == [
        f"table {spec.name}: partitions expire after {days} days"
        for spec in (tables.RAW, tables.AUDIT, tables.DASHBOARD)
    ]
