"""Hedged calls over real HTTP against the simulator: the slow tail is cut, within a budget,
never while the API signals overload, and never past the concurrency ceiling."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from dag_utils.cdn_api import ENDPOINTS, CdnApiClient, DomainMinute
from dag_utils.cdn_api.hedging import HedgePolicy
from tests.conftest import MINUTE, TEST_SIM
from tests.test_cdn_client import assert_true_values
from tools.cdn_api_simulator import SimConfig
from tools.local_servers import CdnApiSimulator

MakeClient = Callable[..., CdnApiClient]
DOMAINS = 100
CALLS = DOMAINS * len(ENDPOINTS)  # one minute each


class CountedWrites(dict):
    """A record's metrics that count how often each endpoint is written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: Counter[str] = Counter()

    def __setitem__(self, endpoint: str, value: object) -> None:
        self.writes[endpoint] += 1
        super().__setitem__(endpoint, value)


def window(sim: CdnApiSimulator, domains: int = DOMAINS, **changes: object) -> list[DomainMinute]:
    sim.configure(domains=domains, **changes)
    sim.reset()
    names = SimConfig(domains=domains).domain_list()
    return [DomainMinute(d, MINUTE, metrics=CountedWrites()) for d in names]


def test_a_hung_call_is_hedged_the_first_answer_wins_and_the_loser_writes_nothing(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    records = window(sim, rate_slow=0.02, slow_ms=5000)
    client = make_client(read_timeout_s=10, hedge_budget=0.1)
    done = list(client.fetch(records))
    assert len(done) == len({(r.domain, r.minute) for r in done}) == DOMAINS
    for record in done:
        assert record.complete
        assert_true_values(record, TEST_SIM)
        assert record.metrics.writes == dict.fromkeys(ENDPOINTS, 1)
    summary = client.summary()
    assert summary["hedge_wins"] >= 1 and summary["retries"] == 0
    assert summary["abandoned"] == summary["hedges"]  # each hedge leaves one loser behind
    api = sim.stats()
    assert api["calls"] == CALLS + summary["hedges"]
    # the API saw the hung ones go (a loser answered as it was given up counts as answered)
    assert 1 <= api["by_status"]["abandoned"] <= summary["abandoned"]


def test_hedges_stay_within_the_budget(sim: CdnApiSimulator, make_client: MakeClient) -> None:
    records = window(sim, rate_slow=0.05, slow_ms=2000)  # more hung calls than the budget
    client = make_client(read_timeout_s=5)
    assert all(r.complete for r in client.fetch(records))
    hedges = client.summary()["hedges"]
    assert hedges >= 1
    assert sim.stats()["calls"] - CALLS == hedges <= 0.02 * CALLS


def test_no_hedges_while_the_api_signals_overload(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    records = window(sim, 40, rate_429=0.8, retry_after_s=0.01, rate_slow=0.1, slow_ms=300)
    client = make_client(max_attempts=30, hedge_budget=0.5)
    list(client.fetch(records))
    summary = client.summary()
    assert summary["hedges_held"] >= 1  # slow calls waited past their hedge delay
    assert summary["hedges"] == 0


def test_the_ceiling_holds_with_hedges_and_abandoned_calls_in_flight(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    records = window(sim, rate_slow=0.05, slow_ms=1000)
    client = make_client(max_concurrency=4, initial_concurrency=4, hedge_budget=0.1)
    assert all(r.complete for r in client.fetch(records))
    summary = client.summary()
    assert summary["hedges"] >= 1 and summary["abandoned"] >= 1
    assert sim.stats()["max_in_flight"] <= 4
    assert summary["max_in_flight"] <= 4


def test_no_hedges_when_a_gateway_would_cut_the_copy_before_it_could_answer() -> None:
    policy = HedgePolicy(budget=0.02)
    for latency in [0.06] * 150 + [0.14] * 50:  # p99 140 ms, median 60 ms
        policy.started()
        policy.answered(latency)
    assert policy.can_win  # no gateway seen yet
    policy.gateway_timeout(1.0)  # a copy at 140 ms answers by about 200 ms: it can win
    assert policy.can_win
    policy.gateway_timeout(0.15)  # 140 + 60 ms: the first call's 504 comes first
    assert not policy.can_win
    policy.gateway_timeout(0.5)  # a slower 504 does not move the quickest one
    assert not policy.can_win
