"""Shared fixtures: one CDN API simulator per test session, reset before each test."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from dag_utils.cdn_api import CdnApiClient, ClientSettings
from tools.cdn_api_simulator import SimConfig
from tools.local_servers import CdnApiSimulator

TOKEN = "tok-3f9c-NEVER-LOG-ME"
MINUTE = 1795428000  # 2026-11-23T10:00Z
# Small and fast: the behaviour under test does not depend on the API's speed.
TEST_SIM = SimConfig(domains=6, token=TOKEN, capacity=32, latency_ms=2.0, available_after_s=0)
FAST_RETRIES = ClientSettings(
    backoff_initial_s=0.01, backoff_max_s=0.05, read_timeout_s=2.0, progress_every_s=0.5
)


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
