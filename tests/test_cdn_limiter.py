"""The adaptive concurrency limit: shrinks on overload, grows back, never passes the ceiling."""

import threading
import time

from dag_utils.cdn_api.limiter import CALM_WINDOW, MIN_EPOCH, AdaptiveLimit


def run_epochs(limit: AdaptiveLimit, epochs: int, latency: float, overloads: int = 0) -> None:
    for _ in range(epochs):
        calls = max(8, int(limit.limit))
        for i in range(calls):
            limit.release(limit.acquire(), overload=i < overloads, latency=latency)


def test_slow_start_reaches_the_ceiling_on_a_healthy_api() -> None:
    limit = AdaptiveLimit(ceiling=64, initial=4)
    run_epochs(limit, 6, latency=0.04)
    assert limit.limit == 64


def test_overload_halves_the_limit_and_it_grows_back_after() -> None:
    limit = AdaptiveLimit(ceiling=64, initial=64)
    run_epochs(limit, 1, latency=0.04)
    run_epochs(limit, 1, latency=0.04, overloads=20)
    assert limit.limit == 32
    run_epochs(limit, 12, latency=0.04)
    assert limit.limit == 64


def test_one_stray_error_does_not_shrink_the_limit() -> None:
    limit = AdaptiveLimit(ceiling=64, initial=64)
    run_epochs(limit, 3, latency=0.04, overloads=1)
    assert limit.limit == 64


def test_rising_latency_shrinks_the_limit_and_recovery_grows_it() -> None:
    limit = AdaptiveLimit(ceiling=32, initial=32)
    run_epochs(limit, 2, latency=0.04)
    run_epochs(limit, 3, latency=0.08)  # requests queue in the stats DB
    assert limit.limit < 32 * 0.9**3
    run_epochs(limit, 20, latency=0.04)
    assert limit.limit == 32


def test_threads_never_exceed_the_limit() -> None:
    limit = AdaptiveLimit(ceiling=5, initial=5)
    in_flight, seen, lock = 0, [], threading.Lock()

    def call() -> None:
        nonlocal in_flight
        for _ in range(20):
            token = limit.acquire()
            with lock:
                in_flight += 1
                seen.append(in_flight)
            time.sleep(0.001)
            with lock:
                in_flight -= 1
            limit.release(token, latency=0.001)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(seen) <= 5
    assert limit.max_in_flight <= 5
    assert limit.in_flight == 0


def test_calm_needs_normal_answers_and_quiet_time_since_the_last_overload() -> None:
    limit = AdaptiveLimit(ceiling=64, initial=64)
    assert not limit.calm  # no baseline latency yet
    run_epochs(limit, 1, latency=0.001)
    time.sleep(0.01)
    assert limit.calm
    limit.release(limit.acquire(), overload=True)
    assert not limit.calm
    for _ in range(MIN_EPOCH):
        assert not limit.calm
        limit.release(limit.acquire(), latency=0.001)
    assert not limit.calm  # the answers came sooner than three round trips
    time.sleep(0.01)
    assert limit.calm


def test_a_spare_slot_may_pass_the_adaptive_limit_but_never_the_ceiling() -> None:
    limit = AdaptiveLimit(ceiling=3, initial=1)
    limit.acquire()
    assert limit.acquire_spare() is not None
    assert limit.acquire_spare() is not None
    assert limit.acquire_spare() is None
    assert limit.in_flight == limit.max_in_flight == 3


def test_an_api_that_keeps_signalling_overload_is_never_calm_between_its_errors() -> None:
    limit = AdaptiveLimit(ceiling=64, initial=64)
    run_epochs(limit, 3, latency=0.001)
    for _ in range(4):  # one 504 in every 40 calls: 2.5%, above CALM_OVERLOAD_RATE
        limit.release(limit.acquire(), overload=True)
        for _ in range(39):
            limit.release(limit.acquire(), latency=0.001)
    time.sleep(0.01)
    assert not limit.calm
    for _ in range(CALM_WINDOW):  # the errors leave the window
        limit.release(limit.acquire(), latency=0.001)
    time.sleep(0.01)
    assert limit.calm
