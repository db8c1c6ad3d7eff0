"""The one place that says which project, datasets, tables, schedule, connections and
limits apply. DAG files and dag_utils read settings from here. Values come from
environment variables with defaults that make the local demo work; nothing here does
I/O or reads Airflow Variables/Connections, so importing it at parse time is free.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pendulum

from dag_utils.cdn_api import ClientSettings

# The environment this bundle runs in, from the environment variable CDN_ENV (in Composer:
# `gcloud composer environments update ENV --update-env-variables CDN_ENV=prod`). The
# same bundle is deployed everywhere; the profile picks the defaults below, and any
# CDN_<NAME> environment variable overrides a single setting.
# In Composer (which always sets COMPOSER_ENVIRONMENT) an unset CDN_ENV is a setup mistake,
# not a wish for the local profile: every BigQuery task would fail against project `local`.
ON_COMPOSER = bool(os.environ.get("COMPOSER_ENVIRONMENT"))
if ON_COMPOSER and not os.environ.get("CDN_ENV"):
    raise RuntimeError(
        "CDN_ENV is not set in this Composer environment: set it with `gcloud composer "
        "environments update ENV --update-env-variables CDN_ENV=<dev|prod>` (see README)"
    )
ENVIRONMENT = os.environ.get("CDN_ENV", "local")
PROFILES: dict[str, dict[str, str]] = {
    "local": {  # make demo and the tests: the emulators and stand-ins
        "DAG_PREFIX": "",
        "GCP_PROJECT": "local",
        "BQ_DATASET": "cdn_stats",
        "SCHEDULE": "*/5 * * * *",
        "ALERT_CHANNEL": "#cdn-alerts",
    },
    "dev": {
        "DAG_PREFIX": "dev_",
        "GCP_PROJECT": "cdn-stats-dev",
        "BQ_DATASET": "cdn_stats_dev",
        "SCHEDULE": "*/5 * * * *",
        "ALERT_CHANNEL": "#cdn-alerts-dev",
    },
    "prod": {
        "DAG_PREFIX": "",
        "GCP_PROJECT": "cdn-stats-prod",
        "BQ_DATASET": "cdn_stats",
        "SCHEDULE": "*/5 * * * *",
        "ALERT_CHANNEL": "#cdn-alerts",
    },
}
if ENVIRONMENT not in PROFILES:
    raise ValueError(f"CDN_ENV={ENVIRONMENT!r}: expected one of {sorted(PROFILES)}")


def _setting(name: str, default: str = "") -> str:
    return os.environ.get(f"CDN_{name}", PROFILES[ENVIRONMENT].get(name, default))


# Google Cloud. In Composer the google provider's default connection carries the
# environment's service account; locally BIGQUERY_EMULATOR_HOST points at the emulator.
GCP_CONN_ID = "google_cloud_default"
GCP_PROJECT = _setting("GCP_PROJECT")
BQ_LOCATION = _setting("BQ_LOCATION", "asia-northeast3")
BQ_DATASET = _setting("BQ_DATASET")
RAW_TABLE = "raw_cdn_minutes"
AUDIT_TABLE = "raw_ingest_runs"
DASHBOARD_TABLE = "cdn_dashboard_minutes"
DASHBOARD_TIMEZONE = "Asia/Seoul"  # the dashboard's local-time column
# Each transform also rewrites the rows of ingest runs published since the dashboard last
# took them, for runs of windows at most this old (the audit table's partition filter).
DASHBOARD_FOLLOW = timedelta(hours=int(_setting("DASHBOARD_FOLLOW_H", "24")))


def _retention_days(name: str) -> int | None:
    """How many days a table's partitions live (BigQuery's partition expiration), or None
    for `never`. At least 2: the alert rules compare a minute with the day before it."""
    text = _setting(name, "400").strip().lower()
    if text == "never":
        return None
    if not text.isdigit() or int(text) < 2:
        raise ValueError(f"CDN_{name}={text!r}: a whole number of days (2 or more), or never")
    return int(text)


# Retention: each table's partitions are deleted by BigQuery this many days after their
# day ends; `ensure_table` sets it on creation and puts it back on an existing table.
RAW_RETENTION_DAYS = _retention_days("RAW_RETENTION_DAYS")
DASHBOARD_RETENTION_DAYS = _retention_days("DASHBOARD_RETENTION_DAYS")
AUDIT_RETENTION_DAYS = _retention_days("AUDIT_RETENTION_DAYS")

# Every BigQuery job has a job timeout (jobTimeoutMs, counted from its creation) shorter
# than its task's execution timeout: a job outlives its task by little even when nothing
# is left to cancel it. A writer cancels a dead try's jobs and waits at most
# BQ_CANCEL_WAIT_S for them to end; it lists jobs created since the job timeout (and a
# margin) ago, as older ones have been stopped by BigQuery.
BQ_JOB_TIMEOUT = timedelta(minutes=float(_setting("BQ_JOB_TIMEOUT_MIN", "10")))
BQ_CANCEL_WAIT_S = float(_setting("BQ_CANCEL_WAIT_S", "120"))
BQ_JOB_LOOKBACK_MARGIN = timedelta(minutes=30)
STAGING_TABLE_PREFIX = "_staging_raw_"  # one per run, expires after STAGING_EXPIRATION
STAGING_EXPIRATION = timedelta(days=1)

# Schedule. Each run covers its data interval shifted back by the availability lag, so
# consecutive runs tile time; minutes still missing are fetched again by later runs
# until the late-data horizon, then counted as lost in the audit table.
SCHEDULE = _setting("SCHEDULE")
# The first unpause backfills every window since START_DATE. The local default suits the
# demo; in Composer it must be chosen (CDN_START_DATE), or the DAGs refuse to load.
if ON_COMPOSER and not os.environ.get("CDN_START_DATE"):
    raise RuntimeError(
        "CDN_START_DATE is not set in this Composer environment: the first unpause backfills "
        "every window since it. Set it, e.g. --update-env-variables "
        "CDN_START_DATE=2026-12-01T00:00:00Z"
    )
START_DATE = pendulum.parse(_setting("START_DATE", "2026-11-24T00:00:00Z"))
AVAILABILITY_LAG = timedelta(minutes=int(_setting("AVAILABILITY_LAG_MIN", "5")))
LATE_DATA_HORIZON = timedelta(minutes=int(_setting("LATE_DATA_HORIZON_MIN", "60")))
MAX_ACTIVE_RUNS = int(_setting("MAX_ACTIVE_RUNS", "4"))

# The CDN API. Connection: host = base URL, password = token (Secret Manager in
# Composer). Every task that calls the API takes a slot of the pool, so however many
# runs a backfill starts, the API never sees more than API_MAX_IN_FLIGHT calls.
CDN_API_CONN_ID = "cdn_api"
CDN_API_POOL = "cdn_api"
CDN_API_POOL_SLOTS = int(_setting("API_POOL_SLOTS", "1"))
# A run whose task waits this long on a pool that no task holds fails, naming the pool
# (Airflow itself only logs a missing pool in the scheduler and never runs the task).
POOL_WAIT = timedelta(seconds=float(_setting("POOL_WAIT_S", "300")))
POOL_POKE = timedelta(seconds=float(_setting("POOL_POKE_S", "30")))
# A window's domains are fetched in shards of at most this many, one mapped task each;
# an account of up to SHARD_SIZE domains is one shard.
SHARD_SIZE = int(_setting("SHARD_SIZE", "1000"))
CDN_API_MAX_IN_FLIGHT = int(_setting("API_MAX_IN_FLIGHT", "64"))
CDN_CLIENT = ClientSettings(
    max_concurrency=max(1, CDN_API_MAX_IN_FLIGHT // CDN_API_POOL_SLOTS),
    window_deadline_s=float(_setting("WINDOW_DEADLINE_S", "240")),
    # A failed call's first retry waits this long, doubling (with jitter) up to 10 s.
    backoff_initial_s=float(_setting("API_BACKOFF_S", "0.25")),
)

# Every task that replaces a window of a table takes the one slot of this pool: two
# transactions that insert the same new (domain, minute) at once would both see it
# absent (snapshot isolation) and both insert it. Never give this pool more than one slot.
BQ_WRITE_POOL = "cdn_bq_writes"
POOLS = {CDN_API_POOL: CDN_API_POOL_SLOTS, BQ_WRITE_POOL: 1}  # what `make provision` creates

# DAG ids are stable, <prefix>cdn_raw_ingest / cdn_log_transform / cdn_data_alert (the
# prefix is empty in local and prod, "dev_" in dev): the UI's pause toggle of the alert
# DAG is the alerting switch, so it must always be the same DAG.
DAG_PREFIX = _setting("DAG_PREFIX")
INGEST_DAG_ID = f"{DAG_PREFIX}cdn_raw_ingest"
TRANSFORM_DAG_ID = f"{DAG_PREFIX}cdn_log_transform"
ALERT_DAG_ID = f"{DAG_PREFIX}cdn_data_alert"
# Pools one DAG shares with another, and the other DAG's tasks on them: the ingest's
# missing-pool watch counts those holders too (a busy pool is not a missing one).
SHARED_POOLS = {BQ_WRITE_POOL: {TRANSFORM_DAG_ID: ("transform_window",)}}
# The tasks that write under that pool's slot, DAG id -> task: before writing, each
# cancels whatever jobs of theirs a killed try left running (dag_utils.bigquery).
BQ_WRITERS = {INGEST_DAG_ID: "publish_window", TRANSFORM_DAG_ID: "transform_window"}
# The transform waits for the ingest run of its window to finish, failed or not, then
# transforms whatever is there; past this it transforms anyway.
INGEST_WAIT = timedelta(seconds=float(_setting("INGEST_WAIT_S", "1800")))
INGEST_POKE = timedelta(seconds=float(_setting("INGEST_POKE_S", "30")))

# Alerting. A window is checked against the domains the ingest saw in it or in the day
# before. One message opens an incident, a reminder at most every ALERT_REMINDER while it
# lasts, one message when data is complete again. Runs that start later than
# ALERT_LIVE_WITHIN after their window (catchup, backfill) never post per window: the
# next live check posts one summary of what they found.
SLACK_CONN_ID = "slack_api_default"
ALERT_CHANNEL = _setting("ALERT_CHANNEL")
ALERT_REMINDER = timedelta(minutes=int(_setting("ALERT_REMINDER_MIN", "60")))
ALERT_LIVE_WITHIN = timedelta(minutes=int(_setting("ALERT_LIVE_WITHIN_MIN", "15")))
# A domain-minute still incomplete this long after its minute ended is missing; before,
# it is only late. Default: two refetches by the next two 5-minute runs.
ALERT_GRACE = timedelta(minutes=int(_setting("ALERT_GRACE_MIN", "10")))
EXPECTED_DOMAINS_LOOKBACK = timedelta(days=1)
# Condition rules over the window's complete dashboard rows, as JSON: name -> rule. Kinds:
# error_ratio_above (status_5xx / requests above `threshold` for `minutes` in a row),
# hit_ratio_below (below `threshold` for `minutes` in a row, in minutes of at least
# `min_requests` requests), requests_below_day_before (under `threshold` times the same
# minute a day earlier, for `minutes` in a row). Each (rule, domain) is an incident.
DEFAULT_ALERT_RULES = {
    "5xx errors": {"kind": "error_ratio_above", "threshold": 0.1, "minutes": 3},
    "cache hit ratio": {
        "kind": "hit_ratio_below",
        "threshold": 0.3,
        "minutes": 5,
        "min_requests": 10_000,
    },
    "traffic drop": {"kind": "requests_below_day_before", "threshold": 0.1, "minutes": 5},
}
_RULE_KEYS = {
    "error_ratio_above": {"kind", "threshold", "minutes"},
    "hit_ratio_below": {"kind", "threshold", "minutes", "min_requests"},
    "requests_below_day_before": {"kind", "threshold", "minutes"},
}


def _rules(text: str) -> dict[str, dict]:
    """The rules from JSON, each checked: a wrong rule stops the bundle from loading."""
    rules = json.loads(text)
    for name, rule in rules.items():
        keys = _RULE_KEYS.get(rule.get("kind"))
        if keys is None or set(rule) != keys or int(rule["minutes"]) < 1:
            raise ValueError(f"CDN_ALERT_RULES: rule {name!r} needs exactly {keys or _RULE_KEYS}")
    return rules


ALERT_RULES = _rules(_setting("ALERT_RULES", json.dumps(DEFAULT_ALERT_RULES)))
ALERT_STATE_VARIABLE = "cdn_alert_state"

# Shared by every DAG: owner, retries with backoff, a timeout per task.
# The two reschedule-mode sensors (the missing-pool watch, the wait for the ingest) get more
# tries than other tasks. Airflow now and then fails a sensor's try by mistake: when one
# poke's executor event reaches the scheduler after the next poke was queued (apache/airflow
# #71172). Their own verdicts never retry (the watch raises AirflowFailException, the wait
# skips), so these tries only absorb that race; a try it takes would otherwise count
# towards failing the run (the ingest DAG's fail_fast).
SENSOR_RETRIES = int(_setting("SENSOR_RETRIES", "10"))

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": int(_setting("TASK_RETRIES", "3")),
    "retry_delay": timedelta(seconds=float(_setting("RETRY_DELAY_S", "30"))),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=5),
    "execution_timeout": timedelta(minutes=15),
}
if (
    BQ_JOB_TIMEOUT.total_seconds() + BQ_CANCEL_WAIT_S
    >= DEFAULT_ARGS["execution_timeout"].total_seconds()
):
    raise ValueError(
        "CDN_BQ_JOB_TIMEOUT_MIN plus CDN_BQ_CANCEL_WAIT_S must stay under the tasks' "
        "execution timeout: a job must never outlive the task that waits for it"
    )
