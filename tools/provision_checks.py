"""What `make provision` checks outside Airflow: that the Slack app can post to the alert
channel, and that the BigQuery dataset's defaults do not fight the bundle's retention.

Neither changes anything. The Slack check needs the token: it reads the Slack connection
the way the DAG will (an AIRFLOW_CONN_ variable here, or the Secret Manager secret's
payload with --secrets-project) and never prints it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import env
from dag_utils import slack, tables

if TYPE_CHECKING:
    from google.cloud import bigquery

    from tools.provision import Outcome

DAY_MS = 86_400_000
SPECS = (tables.RAW, tables.AUDIT, tables.DASHBOARD)


def slack_check(outcome: Outcome, secrets_project: str | None) -> None:
    """Whether the connection's token can post to the alert channel (without posting)."""
    connection = _slack_connection(secrets_project)
    if connection is None:
        outcome.warnings.append(
            f"Slack not checked: connection {env.SLACK_CONN_ID} is not readable here (an "
            "AIRFLOW_CONN_ variable, or its secret with --secrets-project)"
        )
        return
    from slack_sdk.errors import SlackApiError

    client = slack.client(connection.password, connection.extra_dejson.get("base_url"))
    try:
        access = slack.posting_access(client, env.ALERT_CHANNEL)
    except (SlackApiError, OSError) as error:  # down, or unreachable, after the retries
        outcome.problems.append(f"Slack: could not check: {error}")
        return
    (outcome.unchanged if access.ok else outcome.problems).append(f"Slack: {access.detail}")


def _slack_connection(secrets_project: str | None):  # -> airflow.sdk.Connection | None
    from airflow.sdk import Connection

    text = os.environ.get(f"AIRFLOW_CONN_{env.SLACK_CONN_ID.upper()}")
    if not text and secrets_project:
        text = _secret_payload(secrets_project, f"airflow-connections-{env.SLACK_CONN_ID}")
    if not text:
        return None
    if text.lstrip().startswith("{"):
        return Connection.from_json(text, conn_id=env.SLACK_CONN_ID)
    return Connection.from_uri(text, conn_id=env.SLACK_CONN_ID)


def _secret_payload(project: str, secret: str) -> str | None:
    """The latest version's payload; None without it or without access to it."""
    from google.api_core.exceptions import NotFound, PermissionDenied
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    name = f"projects/{project}/secrets/{secret}/versions/latest"
    try:
        return client.access_secret_version(name=name).payload.data.decode()
    except (NotFound, PermissionDenied):
        return None


def dataset_check(bq: bigquery.Client, outcome: Outcome) -> None:
    """Dataset defaults that differ from the bundle's retention, and tables whose own
    settings the next run will change (ensure_table reconciles them)."""
    from google.api_core.exceptions import NotFound

    dataset_id = f"{env.GCP_PROJECT}.{env.BQ_DATASET}"
    try:
        dataset = bq.get_dataset(dataset_id)
    except NotFound:
        outcome.unchanged.append(f"dataset {dataset_id} does not exist yet: the first run makes it")
        return
    wanted = {
        spec.name: _days(spec.retention_days and spec.retention_days * DAY_MS) for spec in SPECS
    }
    partition_default = _days(dataset.default_partition_expiration_ms)
    if dataset.default_partition_expiration_ms and set(wanted.values()) != {partition_default}:
        outcome.warnings.append(
            f"dataset {dataset_id}: default partition expiration {partition_default}, the "
            f"bundle's {_listed(wanted)}: the bundle sets its own on each of its tables; any "
            "other partitioned table made in the dataset gets the default"
        )
    if dataset.default_table_expiration_ms:
        outcome.warnings.append(
            f"dataset {dataset_id}: default table expiration "
            f"{_days(dataset.default_table_expiration_ms)}: the bundle removes it from its "
            "tables (it would drop the whole table); any other table made there expires"
        )
    for spec in SPECS:
        try:
            table = bq.get_table(f"{dataset_id}.{spec.name}")
        except NotFound:
            continue
        found = _days(table.time_partitioning and table.time_partitioning.expiration_ms)
        if (
            found != wanted[spec.name]
            or table.expires is not None
            or bool(table.require_partition_filter) != spec.require_partition_filter
        ):
            outcome.warnings.append(
                f"table {spec.name}: partition expiration {found}, require_partition_filter "
                f"{bool(table.require_partition_filter)}, table expiration {table.expires}: "
                f"the next run sets {wanted[spec.name]}, {spec.require_partition_filter}, none"
            )
        else:
            outcome.unchanged.append(f"table {spec.name}: partitions expire after {found}")


def _days(ms: int | None) -> str:
    return "never" if not ms else f"{ms / DAY_MS:g} days"


def _listed(by_table: dict[str, str]) -> str:
    return ", ".join(f"{name} {days}" for name, days in by_table.items())
