"""Shared fixtures: one of each local server per test session, Airflow on a temporary home.

The session's PostgreSQL server (in a temporary folder, on a free port) holds the
metadata DB of the in-process Airflow and a fresh database for each real Airflow stack.

The way Composer loads the bundle is mirrored: the repository root (the bucket's dags/
folder) is on sys.path, and connections come from AIRFLOW_CONN_* environment variables.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dag_utils.cdn_api import CdnApiClient, ClientSettings
from tests.bigquery_capture import SentToBigQuery
from tools.cdn_api_simulator import SimConfig
from tools.local_servers import (
    REPO,
    BigQueryEmulator,
    BigQueryFaultProxy,
    CdnApiSimulator,
    SlackStandIn,
)
from tools.postgres import PostgresServer, airflow_database_settings

TOKEN = "tok-3f9c-NEVER-LOG-ME"
MINUTE = 1795428000  # 2026-11-23T10:00Z
# Small and fast: the behaviour under test does not depend on the API's speed.
TEST_SIM = SimConfig(domains=6, token=TOKEN, capacity=32, latency_ms=2.0, available_after_s=0)
FAST_RETRIES = ClientSettings(
    backoff_initial_s=0.01, backoff_max_s=0.05, read_timeout_s=2.0, progress_every_s=0.5
)
TEST_DATASET = "cdn_test"
API_MAX_IN_FLIGHT = 8


def pytest_configure(config: pytest.Config) -> None:
    """Airflow and env.py read their settings at import: set them before any test imports."""
    home = Path(tempfile.mkdtemp(prefix="airflow-test-"))
    postgres = PostgresServer(Path(tempfile.mkdtemp(prefix="airflow-test-postgres-"))).start()
    config.stash[POSTGRES] = postgres
    os.environ.update(
        AIRFLOW_HOME=str(home),
        **airflow_database_settings(postgres.new_database("session")),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="True",
        # dag.test's in-process Execution API signs task tokens with it; Airflow 3.2.2
        # refuses to start it without one (3.3 makes one up).
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        CDN_BQ_DATASET=TEST_DATASET,
        CDN_START_DATE="2026-11-01T00:00:00Z",
        CDN_API_MAX_IN_FLIGHT=str(API_MAX_IN_FLIGHT),
        CDN_RETRY_DELAY_S="0",
        CDN_TASK_RETRIES="1",
        CDN_WINDOW_DEADLINE_S="60",
        # A call the simulator fails for good costs 5 backoffs: ~1.5 s here, not ~8 s.
        # The client's own backoff is tested in test_cdn_client.py; chaos keeps the default.
        CDN_API_BACKOFF_S="0.05",
    )
    # dag.test waits out a reschedule sensor's poke interval (a real stack pokes every 10 s:
    # tools/airflow_stack.py).
    os.environ.setdefault("CDN_POOL_POKE_S", "1")
    config.stash[AIRFLOW_HOME] = home
    # A CI runner stops a run that overstays with SIGTERM: end the session as Ctrl-C does,
    # so fixtures and pytest_unconfigure stop the servers it started (each runs in a
    # session of its own and would outlive it).
    signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if postgres := config.stash.get(POSTGRES, None):
        if settings := sys.modules.get("airflow.settings"):
            settings.dispose_orm()  # close the pool first: no "terminating connection" noise
        postgres.stop()
        shutil.rmtree(postgres.root, ignore_errors=True)


AIRFLOW_HOME = pytest.StashKey[Path]()
SENT_SQL_CHECK = "tests/test_googlesql.py::test_every_statement_the_pipeline_sent_is_googlesql"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The check of what the pipeline sent to BigQuery runs last, after everything sent it."""
    last = [item for item in items if item.nodeid == SENT_SQL_CHECK]
    items[:] = [item for item in items if item.nodeid != SENT_SQL_CHECK] + last


@pytest.fixture(scope="session", autouse=True)
def sent_to_bigquery() -> Iterator[SentToBigQuery]:
    """Every statement (with its parameters) and load the pipeline sends, at the client
    boundary (dag_utils.bigquery), recorded for the GoogleSQL check; the calls go on."""
    with pytest.MonkeyPatch.context() as patch, SentToBigQuery(patch) as sent:
        yield sent


POSTGRES = pytest.StashKey[PostgresServer]()


@pytest.fixture
def metadata_db(pytestconfig: pytest.Config) -> str:
    """A fresh, empty metadata database on the session's server, for one Airflow stack."""
    return pytestconfig.stash[POSTGRES].new_database()


@pytest.fixture(scope="session")
def simulator_process() -> Iterator[CdnApiSimulator]:
    with CdnApiSimulator(token=TOKEN) as sim:
        yield sim


@pytest.fixture
def sim(simulator_process: CdnApiSimulator) -> CdnApiSimulator:
    """The session's simulator with the test defaults and zeroed counters."""
    simulator_process.configure(**dataclasses.asdict(TEST_SIM))
    simulator_process.reset()
    return simulator_process


@pytest.fixture
def make_client(sim: CdnApiSimulator) -> Callable[..., CdnApiClient]:
    def make(token: str = TOKEN, **settings: object) -> CdnApiClient:
        return CdnApiClient(sim.url, token, dataclasses.replace(FAST_RETRIES, **settings))

    return make


@pytest.fixture(scope="session")
def bq_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryFaultProxy]:
    """The BigQuery emulator behind the fault proxy; every client of the session uses it."""
    with (
        BigQueryEmulator(tmp_path_factory.mktemp("bigquery")) as emulator,
        BigQueryFaultProxy(emulator.url) as proxy,
    ):
        os.environ["BIGQUERY_EMULATOR_HOST"] = proxy.url
        yield proxy
        os.environ.pop("BIGQUERY_EMULATOR_HOST", None)


@pytest.fixture
def bq(bq_proxy: BigQueryFaultProxy):
    """A BigQuery client on an empty test dataset."""
    from dag_utils import bigquery

    client = bigquery.client()
    client.delete_dataset(f"local.{TEST_DATASET}", delete_contents=True, not_found_ok=True)
    return client


@pytest.fixture(scope="session")
def airflow_db(pytestconfig: pytest.Config) -> Path:
    """The session's migrated metadata database, for Airflow in the test process."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ,
    )
    return pytestconfig.stash[AIRFLOW_HOME]


@pytest.fixture
def cdn_connection(sim: CdnApiSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cdn_api Airflow Connection, pointing at the simulator."""
    conn = {"conn_type": "http", "host": sim.url, "password": TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_CDN_API", json.dumps(conn))


SLACK_TOKEN = "local-slack-test-token-NEVER-LOG"


@pytest.fixture(scope="session")
def slack_process() -> Iterator[SlackStandIn]:
    with SlackStandIn(SLACK_TOKEN) as standin:
        yield standin


@pytest.fixture
def slack(slack_process: SlackStandIn, monkeypatch: pytest.MonkeyPatch) -> SlackStandIn:
    """The Slack stand-in with no messages, and the Airflow Connection pointing at it."""
    slack_process.reset()
    conn = {
        "conn_type": "slack",
        "password": SLACK_TOKEN,
        "extra": {"base_url": slack_process.api_url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_API_DEFAULT", json.dumps(conn))
    return slack_process


@pytest.fixture
def alert_state(airflow_db: Path) -> Iterator[None]:
    """No incident state before or after the test."""
    from airflow.models.variable import Variable

    import env

    Variable.delete(env.ALERT_STATE_VARIABLE)
    yield
    Variable.delete(env.ALERT_STATE_VARIABLE)
