"""`make provision ENV=<env> AIRFLOW_URL=<url> [DRY_RUN=1]`: an Airflow set up for the bundle.

Through the Airflow 3 REST API (/api/v2), the same way locally and on Composer: creates
or updates the pools env.py names (cdn_api with CDN_API_POOL_SLOTS slots, cdn_bq_writes
with one), and checks that every connection the DAGs use resolves, without reading a
secret: in the metadata DB (GET /connections/<id>, password redacted by Airflow), as an
AIRFLOW_CONN_ environment variable of this process (local runs), or as an enabled Secret
Manager secret `airflow-connections-<id>` (metadata only, never its payload). Then it
checks, changing nothing, that the Slack app can post to the alert channel (the Slack
connection's token: the one secret it reads, never printed) and that the BigQuery
dataset's default expirations do not differ from the bundle's retention
(tools/provision_checks.py). Running it twice changes nothing the second time; DRY_RUN=1
prints the plan and changes nothing.

Authentication: on Composer with Application Default Credentials (a Google OAuth token,
which Composer 3's Airflow REST API accepts); locally with AIRFLOW_USER/AIRFLOW_PASSWORD
against the api-server's /auth/token.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

import requests

import env
from tools import provision_checks

CONNECTIONS = (env.CDN_API_CONN_ID, env.SLACK_CONN_ID, env.GCP_CONN_ID)


@dataclass
class Outcome:
    changes: list[str] = field(default_factory=list)  # done (or, in a dry run, to do)
    unchanged: list[str] = field(default_factory=list)
    missing_connections: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the bundle cannot work until fixed
    warnings: list[str] = field(default_factory=list)  # worth knowing; nothing fails


class AirflowApi:
    """The few /api/v2 calls provisioning needs, with a bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.session = url.rstrip("/"), requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        answer = self.session.request(method, f"{self.url}/api/v2/{path}", json=body, timeout=30)
        if answer.status_code >= 400 and answer.status_code != 404:
            raise SystemExit(f"{method} /api/v2/{path}: HTTP {answer.status_code} {answer.text}")
        return answer


def local_token(url: str, user: str, password: str) -> str:
    answer = requests.post(
        f"{url.rstrip('/')}/auth/token", json={"username": user, "password": password}, timeout=10
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def adc_token() -> str:
    """A Google OAuth access token of Application Default Credentials (Composer)."""
    import google.auth
    from google.auth.transport.requests import Request

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(Request())
    return credentials.token


def secret_name(conn_id: str) -> str:
    """The Secret Manager secret Composer's backend reads for a connection (default prefix)."""
    return f"airflow-connections-{conn_id}"


def secret_exists(project: str, conn_id: str) -> bool:
    """An enabled version of the connection's secret exists (metadata only, no payload)."""
    from google.api_core.exceptions import NotFound
    from google.cloud import secretmanager

    client = secretmanager.SecretManagerServiceClient()
    parent = f"projects/{project}/secrets/{secret_name(conn_id)}"
    try:
        return any(v.state.name == "ENABLED" for v in client.list_secret_versions(parent=parent))
    except NotFound:
        return False


def pool_steps(api: AirflowApi, pools: dict[str, int], dry_run: bool, outcome: Outcome) -> None:
    for name, slots in pools.items():
        found = api.call("GET", f"pools/{name}")
        body = {"name": name, "slots": slots, "include_deferred": False}
        if found.status_code == 404:
            outcome.changes.append(f"create pool {name} with {slots} slots")
            if not dry_run:
                api.call("POST", "pools", body)
        elif found.json()["slots"] != slots:
            outcome.changes.append(f"pool {name}: {found.json()['slots']} -> {slots} slots")
            if not dry_run:
                current = found.json()
                patch = {
                    "pool": name,
                    "slots": slots,
                    "include_deferred": current["include_deferred"],
                }
                api.call("PATCH", f"pools/{name}?update_mask=slots", patch)
        else:
            outcome.unchanged.append(f"pool {name} has {slots} slots")


def connection_steps(api: AirflowApi, secrets_project: str | None, outcome: Outcome) -> None:
    for conn_id in CONNECTIONS:
        if api.call("GET", f"connections/{conn_id}").status_code != 404:
            outcome.unchanged.append(f"connection {conn_id} is in the metadata DB")
        elif os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}"):
            outcome.unchanged.append(f"connection {conn_id} is an AIRFLOW_CONN_ variable")
        elif secrets_project and secret_exists(secrets_project, conn_id):
            outcome.unchanged.append(f"connection {conn_id} is secret {secret_name(conn_id)}")
        elif conn_id == env.GCP_CONN_ID and os.environ.get("BIGQUERY_EMULATOR_HOST"):
            outcome.unchanged.append(f"connection {conn_id} is not used: BigQuery emulator")
        else:
            outcome.missing_connections.append(
                f"connection {conn_id} does not resolve: create the Secret Manager secret "
                f"{secret_name(conn_id)} (README 'First deploy')"
            )


def provision(
    api: AirflowApi,
    dry_run: bool = False,
    pools: dict[str, int] | None = None,
    secrets_project: str | None = None,
) -> Outcome:
    outcome = Outcome()
    pool_steps(api, pools if pools is not None else env.POOLS, dry_run, outcome)
    connection_steps(api, secrets_project, outcome)
    provision_checks.slack_check(outcome, secrets_project)
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import DefaultCredentialsError

    try:
        provision_checks.dataset_check(bigquery_client(), outcome)
    except (GoogleAPIError, DefaultCredentialsError) as error:
        outcome.warnings.append(f"BigQuery dataset not checked: {error}")
    return outcome


def bigquery_client():  # -> google.cloud.bigquery.Client
    """The emulator's client locally; Application Default Credentials otherwise."""
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        from dag_utils import bigquery

        return bigquery.client()
    from google.cloud import bigquery

    return bigquery.Client(project=env.GCP_PROJECT, location=env.BQ_LOCATION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--airflow-url", required=True, help="the api-server / Composer airflowUri")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--secrets-project", help="the project of the Secret Manager secrets")
    args = parser.parse_args(argv)
    on_composer = "AIRFLOW_USER" not in os.environ
    token = (
        adc_token()
        if on_composer
        else local_token(
            args.airflow_url, os.environ["AIRFLOW_USER"], os.environ["AIRFLOW_PASSWORD"]
        )
    )
    outcome = provision(
        AirflowApi(args.airflow_url, token), args.dry_run, None, args.secrets_project
    )
    print_outcome(outcome, args.dry_run)
    return 1 if outcome.missing_connections or outcome.problems else 0


def print_outcome(outcome: Outcome, dry_run: bool) -> None:
    for line in outcome.changes:
        print(("would " if dry_run else "did ") + line)
    for line in outcome.unchanged:
        print("ok    " + line)
    for line in outcome.missing_connections:
        print("MISSING " + line)
    for line in outcome.problems:
        print("PROBLEM " + line)
    for line in outcome.warnings:
        print("WARN  " + line)
    verb = "to make (dry run: nothing changed)" if dry_run else "made"
    print(f"{len(outcome.changes)} changes {verb}, {len(outcome.unchanged)} already right")


if __name__ == "__main__":
    raise SystemExit(main())
