"""Run statistics of one client run, in constant memory."""

from __future__ import annotations

import math
import resource
import threading
import time
from collections import Counter
from typing import Any

_BUCKET_RATIO = 1.05  # latency percentiles are exact to within 5%
_MIN_LATENCY = 1e-4


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.total = 0

    def add(self, seconds: float) -> None:
        self.counts[int(math.log(max(seconds, _MIN_LATENCY) / _MIN_LATENCY, _BUCKET_RATIO))] += 1
        self.total += 1

    def percentile(self, q: float) -> float | None:
        if not self.total:
            return None
        rank, seen = q * self.total, 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return _MIN_LATENCY * _BUCKET_RATIO ** (bucket + 0.5)
        return None


class RunStats:
    """Counters a client updates from its worker threads."""

    def __init__(self) -> None:
        self.calls = 0
        self.retries: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.not_available = 0
        self.complete = 0
        self.incomplete = 0
        self.latency = LatencyHistogram()
        self.tail: Counter[str] = Counter()  # hedges, hedge_wins, hedges_held, abandoned
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._cpu_started = time.process_time()

    def call(self, latency: float | None) -> None:
        with self._lock:
            self.calls += 1
            if latency is not None:
                self.latency.add(latency)

    def retry(self, cause: str) -> None:
        with self._lock:
            self.retries[cause] += 1

    def count(self, event: str) -> None:
        with self._lock:
            self.tail[event] += 1

    def record(self, complete: bool, failures: list[str], not_available: int) -> None:
        with self._lock:
            self.complete += complete
            self.incomplete += not complete
            self.failures.update(failures)
            self.not_available += not_available

    def summary(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            p50, p95 = self.latency.percentile(0.5), self.latency.percentile(0.95)
            return {
                "calls": self.calls,
                "retries": sum(self.retries.values()),
                "retries_by_cause": dict(sorted(self.retries.items())),
                "failures": sum(self.failures.values()),
                "failures_by_kind": dict(sorted(self.failures.items())),
                "not_available": self.not_available,
                "records": self.complete + self.incomplete,
                "complete": self.complete,
                "incomplete": self.incomplete,
                "hedges": self.tail["hedges"],
                "hedge_wins": self.tail["hedge_wins"],
                "hedges_held": self.tail["hedges_held"],
                "abandoned": self.tail["abandoned"],
                "latency_p50_ms": round(p50 * 1000, 1) if p50 else None,
                "latency_p95_ms": round(p95 * 1000, 1) if p95 else None,
                **extra,
                "wall_s": round(time.monotonic() - self._started, 3),
                "cpu_s": round(time.process_time() - self._cpu_started, 3),
                "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
