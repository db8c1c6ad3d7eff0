"""Concurrency limit for the CDN API: a hard ceiling, and below it an adaptive limit.

The limit is adjusted once per epoch (about one round trip's worth of calls that
started under the current limit): it halves when overload signals (429,
502/503/504, timeouts) exceed a tolerance, shrinks in proportion when the median
latency climbs past the baseline (requests queue in the stats DB), and otherwise
grows: doubling until the first sign of overload (slow start), then by 10% an epoch.
Calls started under an earlier limit are not evidence about the current one, so
they are left out of the epoch.

`calm` says whether extra calls (hedges) may be sent: only once, since the last
overload signal or cut of the limit, the API has answered normally MIN_EPOCH times and
a few round trips have passed, and only while at most 1 in 100 of the last calls
signalled overload. An API that answers 504 every few dozen calls is struggling even
between two of its errors: hedges would be extra load on it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

MIN_EPOCH = 8
SLOW_START_QUEUEING = 1.2  # slow start ends once latency rises this far
CALM_ROUND_TRIPS = 3  # quiet time, in baseline latencies, before the API counts as calm
CALM_WINDOW = 200  # the last calls whose overload signals `calm` counts
CALM_OVERLOAD_RATE = 0.01  # at most this fraction of them, for the API to count as calm


@dataclass
class _Epoch:
    calls: int = 0
    overloads: int = 0
    latencies: list[float] = field(default_factory=list)


class AdaptiveLimit:
    def __init__(
        self,
        ceiling: int,
        initial: int = 4,
        latency_tolerance: float = 1.5,
        overload_tolerance: float = 0.1,
        baseline_drift: float = 0.002,
    ) -> None:
        if ceiling < 1:
            raise ValueError("the concurrency ceiling must be at least 1")
        self.ceiling = ceiling
        self.limit = float(max(1, min(initial, ceiling)))
        self.min_limit = self.max_limit = self.limit
        self.in_flight = 0
        self.max_in_flight = 0
        self.baseline: float | None = None
        self._latency_tolerance = latency_tolerance
        self._overload_tolerance = overload_tolerance
        self._baseline_drift = baseline_drift
        self._slow_start = True
        self._unrest_at = -math.inf  # when an overload signal or a cut was last seen
        self._answers_since_unrest = 0
        self._recent_overloads: deque[bool] = deque(maxlen=CALM_WINDOW)
        self._epoch = _Epoch()
        self._generation = 0
        self._lock = threading.Lock()
        # Waiting callers in arrival order; a release hands its slot to exactly one of them,
        # so no thread is woken only to find the slot taken.
        self._waiters: deque[threading.Lock] = deque()

    @property
    def calm(self) -> bool:
        """MIN_EPOCH normal answers and CALM_ROUND_TRIPS baseline latencies since the last
        overload signal or cut, and few overload signals among the last calls."""
        if self.baseline is None or self._answers_since_unrest < MIN_EPOCH:
            return False
        with self._lock:  # a few hundred bools, read only by calls past their hedge delay
            overloads = sum(self._recent_overloads)
        if overloads > CALM_OVERLOAD_RATE * CALM_WINDOW:
            return False
        return time.monotonic() - self._unrest_at >= CALM_ROUND_TRIPS * self.baseline

    def acquire(self) -> int:
        """Block until a call may start; returns the token to hand back to release()."""
        with self._lock:
            if not self._waiters and self.in_flight < int(self.limit):
                self._take_slot()
                return self._generation
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        waiter.acquire()  # released by release(), which took the slot for us
        return self._generation

    def acquire_spare(self) -> int | None:
        """A slot for an extra call (a hedge): past the adaptive limit if need be, never
        past the ceiling. None when the ceiling is reached."""
        with self._lock:
            if self.in_flight >= self.ceiling:
                return None
            self._take_slot()
            return self._generation

    def release(self, token: int, overload: bool = False, latency: float | None = None) -> None:
        """End a call: `overload` if the API signalled it, `latency` if it answered normally."""
        with self._lock:
            self.in_flight -= 1
            epoch = self._epoch
            if overload or latency is not None:  # abandoned calls say nothing either way
                self._recent_overloads.append(overload)
            if overload:
                self._unrest()
            elif latency is not None:
                self._answers_since_unrest += 1
            if token == self._generation:
                epoch.calls += 1
                if overload:
                    epoch.overloads += 1
                elif latency is not None:
                    epoch.latencies.append(latency)
            if epoch.calls >= max(MIN_EPOCH, int(self.limit)):
                self._adjust(epoch)
                self._epoch = _Epoch()
            while self._waiters and self.in_flight < int(self.limit):
                self._take_slot()
                self._waiters.popleft().release()

    def _take_slot(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _adjust(self, epoch: _Epoch) -> None:
        median = sorted(epoch.latencies)[len(epoch.latencies) // 2] if epoch.latencies else None
        if median is not None:
            drifted = self.baseline * (1 + self._baseline_drift) if self.baseline else median
            self.baseline = min(drifted, median)
        queueing = median / self.baseline if median and self.baseline else 1.0
        if epoch.overloads >= 2 and epoch.overloads > self._overload_tolerance * epoch.calls:
            self._set(self.limit * 0.5)
            self._unrest()
        elif queueing > self._latency_tolerance:
            self._set(self.limit * min(0.9, max(0.5, self._latency_tolerance / queueing)))
            self._unrest()
        elif self._slow_start and queueing <= SLOW_START_QUEUEING:
            self._set(self.limit * 2)
            return
        else:
            self._set(self.limit + max(1.0, self.limit * 0.1))
        self._slow_start = False

    def _unrest(self) -> None:
        self._unrest_at = time.monotonic()
        self._answers_since_unrest = 0

    def _set(self, limit: float) -> None:
        limit = min(float(self.ceiling), max(1.0, limit))
        if limit != self.limit:
            self._generation += 1
        self.limit = limit
        self.min_limit = min(self.min_limit, self.limit)
        self.max_limit = max(self.max_limit, self.limit)
