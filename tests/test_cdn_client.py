"""The CDN API client over real HTTP against the simulator, fault by fault."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from dag_utils.cdn_api import ENDPOINTS, NOT_AVAILABLE, AuthError, CdnApiClient, DomainMinute
from tests.conftest import MINUTE, TEST_SIM, TOKEN
from tools.cdn_api_simulator import EXTRA_COLUMN, HOSTILE_DOMAINS, SimConfig, true_metrics
from tools.local_servers import CdnApiSimulator

MINUTES = [MINUTE, MINUTE + 60, MINUTE + 120]
MakeClient = Callable[..., CdnApiClient]


def fetch(
    client: CdnApiClient, minutes: list[int] = MINUTES
) -> dict[tuple[str, int], DomainMinute]:
    records = {(r.domain, r.minute): r for r in client.fetch_window(client.list_domains(), minutes)}
    return records


def assert_true_values(record: DomainMinute, config: SimConfig, endpoints=ENDPOINTS) -> None:
    for endpoint in endpoints:
        served = record.metrics[endpoint]
        assert served is not None, (record.domain, endpoint, record.errors)
        contract = {k: v for k, v in served.items() if k != EXTRA_COLUMN}
        assert contract == true_metrics(record.domain, record.minute, endpoint, config)


def test_a_window_yields_one_complete_true_record_per_domain_minute(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    client = make_client()
    records = fetch(client)
    assert set(records) == {(d, m) for d in TEST_SIM.domain_list() for m in MINUTES}
    for record in records.values():
        assert record.complete and record.errors == {}
        assert_true_values(record, TEST_SIM)
    summary = client.summary()
    assert summary["complete"] == len(records) and summary["retries"] == 0
    # one call per endpoint, plus any copy of a call that was slow to answer
    assert sim.stats()["calls"] == 1 + len(records) * len(ENDPOINTS) + summary["hedges"]


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        ({"rate_429": 0.3, "retry_after_s": 0.05}, "http_429"),
        ({"rate_5xx": 0.3}, "http_5"),
        ({"rate_reset": 0.3}, "connection"),
        ({"rate_rtcode": 0.3}, "rtcode_500"),
        ({"rate_slow": 0.1, "slow_ms": 1500}, "timeout"),
    ],
)
def test_transient_faults_are_retried_to_complete_true_records(
    sim: CdnApiSimulator, make_client: MakeClient, fault: dict, cause: str
) -> None:
    sim.configure(**fault)
    client = make_client(read_timeout_s=0.5, max_attempts=8)
    records = fetch(client)
    assert len(records) == len(TEST_SIM.domain_list()) * len(MINUTES)
    for record in records.values():
        assert record.complete, record.errors
        assert_true_values(record, TEST_SIM)
    retries = client.summary()["retries_by_cause"]
    assert any(c.startswith(cause) for c in retries), retries


def test_a_429_waits_at_least_its_retry_after(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(rate_429=1.0, retry_after_s=0.4)
    client = make_client(max_attempts=2, window_deadline_s=30)
    with pytest.raises(Exception, match="http_429"):
        client.list_domains()
    assert client.summary()["wall_s"] >= 0.4
    assert sim.stats()["by_status"] == {"429": 2}


def test_reordered_columns_extra_columns_and_neighbour_rows_parse_by_name(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(rate_reorder=1.0)
    records = fetch(make_client())
    for record in records.values():
        assert record.complete
        assert_true_values(record, TEST_SIM)
        assert all(record.metrics[e][EXTRA_COLUMN] == "ap-northeast-2" for e in ENDPOINTS)


def test_null_values_stay_null_in_a_complete_record(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(rate_null=0.3)
    config = SimConfig(**{**TEST_SIM.__dict__, "rate_null": 0.3})
    records = fetch(make_client())
    nulls = 0
    for record in records.values():
        assert record.complete
        assert_true_values(record, config)
        nulls += sum(v is None for e in ENDPOINTS for v in record.metrics[e].values())
    assert nulls > 0


def test_empty_data_is_not_available_not_a_failure(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(rate_empty=0.3)
    client = make_client()
    records = fetch(client)
    waiting = [r for r in records.values() if r.errors]
    assert waiting, "the simulator served no empty minute"
    for record in waiting:
        assert not record.complete
        for endpoint, reason in record.errors.items():
            assert reason.startswith(NOT_AVAILABLE)
            assert record.metrics[endpoint] is None
        assert_true_values(record, TEST_SIM, [e for e in ENDPOINTS if e not in record.errors])
    summary = client.summary()
    assert summary["retries"] == 0 and summary["failures"] == 0
    assert summary["incomplete"] == len(waiting) and summary["not_available"] >= len(waiting)


def test_a_persistently_failing_endpoint_is_reported_and_the_rest_kept(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    broken = TEST_SIM.domain_list()[1]
    sim.configure(failing=[f"cache:{broken}"])
    client = make_client(max_attempts=3)
    records = fetch(client)
    for (domain, _), record in records.items():
        if domain == broken:
            assert not record.complete and record.metrics["cache"] is None
            assert record.errors["cache"].startswith("failed after 3 attempts: http_500")
            assert_true_values(record, TEST_SIM, ["traffic", "status"])
        else:
            assert record.complete
    assert sim.stats()["by_status"]["500"] == 3 * len(MINUTES)
    assert client.summary()["failures_by_kind"] == {"failed": len(MINUTES)}


def test_a_refetch_fetches_only_the_missing_endpoints_and_keeps_what_was_there(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    fixed, broken = TEST_SIM.domain_list()[:2]
    sim.configure(failing=[f"cache:{broken}"])
    kept = {"bytes": 1, "bps": 2, "requests": 3}  # not what the API would say now
    earlier = [
        DomainMinute(
            domain,
            MINUTE,
            {"traffic": kept, "status": None, "cache": None},
            {"status": "not_available: x", "cache": "failed after 6 attempts: http_500"},
        )
        for domain in (fixed, broken)
    ]
    records = {r.domain: r for r in make_client(max_attempts=2).fetch(earlier)}
    assert records[fixed].complete and records[fixed].metrics["traffic"] == kept
    assert_true_values(records[fixed], TEST_SIM, ["status", "cache"])
    assert records[broken].metrics["traffic"] == kept
    assert records[broken].errors == {"cache": "failed after 2 attempts: http_500"}
    assert "traffic" not in sim.stats()["by_endpoint"]


def test_a_4xx_answer_is_not_retried(sim: CdnApiSimulator, make_client: MakeClient) -> None:
    client = make_client()
    records = list(client.fetch_window(["not-ours.example.net"], [MINUTE]))
    assert records[0].errors == {
        e: "rejected: http_400: domain not allowed for this token" for e in ENDPOINTS
    }
    assert sim.stats()["calls"] == len(ENDPOINTS)


def test_a_minute_not_yet_available_is_reported_as_such(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(available_after_s=10**9)
    records = fetch(make_client(), [MINUTE])
    assert all(set(r.errors) == set(ENDPOINTS) for r in records.values())
    assert all(v.startswith(NOT_AVAILABLE) for r in records.values() for v in r.errors.values())


def test_a_wrong_token_stops_the_run_at_once(sim: CdnApiSimulator, make_client: MakeClient) -> None:
    with pytest.raises(AuthError):
        make_client(token="wrong").list_domains()
    assert sim.stats()["calls"] == 1
    client = make_client(token="wrong")
    with pytest.raises(AuthError):
        list(client.fetch_window(TEST_SIM.domain_list(), MINUTES))
    assert sim.stats()["calls"] <= 1 + client.settings.max_concurrency


def test_calls_in_flight_never_exceed_the_ceiling(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(domains=30, capacity=64, latency_ms=20)
    client = make_client(max_concurrency=5, initial_concurrency=5)
    records = fetch(client)
    assert all(r.complete for r in records.values())
    assert sim.stats()["max_in_flight"] <= 5
    assert client.summary()["max_in_flight"] == 5


def test_an_undersized_api_is_not_overrun_and_loses_nothing(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(domains=20, capacity=2, latency_ms=10, gateway_timeout_ms=60)
    client = make_client(max_concurrency=32, max_attempts=8)
    records = fetch(client)
    assert all(r.complete for r in records.values())
    assert client.summary()["limit_final"] <= 8


def test_the_window_deadline_ends_the_run_and_reports_what_was_not_fetched(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(capacity=1, latency_ms=100, latency_sigma=0.0)
    client = make_client(window_deadline_s=0.5, max_concurrency=2)
    records = fetch(client)
    late = [r for r in records.values() if any(e.startswith("deadline") for e in r.errors.values())]
    assert late and all(not r.complete for r in late)
    assert len(records) == len(TEST_SIM.domain_list()) * len(MINUTES)
    assert client.summary()["wall_s"] < 3


def test_hostile_domain_names_round_trip_unchanged(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(hostile=True)
    records = fetch(make_client(), [MINUTE])
    for name in HOSTILE_DOMAINS:
        record = records[(name, MINUTE)]
        assert record.complete
        assert_true_values(record, TEST_SIM)


def test_leaving_the_window_early_stops_every_worker(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(domains=40, latency_ms=20)
    before = threading.active_count()
    window = make_client().fetch_window(SimConfig(domains=40).domain_list(), MINUTES)
    next(window)
    window.close()
    assert threading.active_count() == before


def test_a_slow_consumer_holds_back_the_workers_so_memory_does_not_grow_with_the_window(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(domains=400, latency_ms=1)
    domains, pulled = SimConfig(domains=400).domain_list(), [0]

    def wanted() -> Iterator[DomainMinute]:
        for domain in domains:
            for minute in MINUTES:
                pulled[0] += 1
                yield DomainMinute(domain, minute)

    records = make_client(max_concurrency=4).fetch(wanted())
    next(records)
    time.sleep(0.5)  # the workers run ahead until the hand-over queue is full
    assert pulled[0] <= 4 * 4 + 4 + 2  # queue, a record per worker, the one taken
    assert 1 + sum(1 for _ in records) == pulled[0] == 1200


def test_a_domain_minute_asked_for_twice_is_an_error(
    sim: CdnApiSimulator, make_client: MakeClient
) -> None:
    sim.configure(latency_ms=50)  # the first is still in flight when the second comes
    domain = TEST_SIM.domain_list()[0]
    with pytest.raises(ValueError, match="asked for twice"):
        list(make_client().fetch([DomainMinute(domain, MINUTE), DomainMinute(domain, MINUTE)]))


def test_the_token_never_appears_in_logs_errors_or_output(
    sim: CdnApiSimulator, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.configure(rate_5xx=0.2, rate_reset=0.1, rate_429=0.1, retry_after_s=0.01, hostile=True)
    client = make_client()
    records = fetch(client)
    with pytest.raises(AuthError) as rejected:
        make_client(token=TOKEN + "-old").list_domains()
    shown = [caplog.text, repr(client), str(client.summary()), str(rejected.value)]
    shown += [str(r.to_json()) for r in records.values()]
    assert "urllib3" in caplog.text  # debug logging of the HTTP layer was captured
    assert not [text for text in shown if TOKEN in text]
