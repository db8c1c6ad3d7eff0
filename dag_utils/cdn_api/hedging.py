"""When to send a second copy of a slow call, and how many ("The Tail at Scale", Dean and
Barroso, CACM 2013).

A call still unanswered after a high percentile of recent latencies gets one copy (a
hedge); the first answer wins and the other is abandoned. The percentile follows from
the budget: with a budget of 2% of the calls, calls are hedged past the 99th percentile
of recent answers, so ordinary latency spends about half of the budget and the rest is
left for calls that hang. A hedge is sent only when the budget has room: the extra calls
of a window never exceed `budget` times its calls.

A hedge is also pointless when a gateway in front of the API cuts calls (504) before a
copy sent at the hedge delay could answer: the first call's 504 comes back first, and the
copy only adds work to a database that is already slow. So once a 504 has been seen, a
call is hedged only if the hedge delay plus the median answer time is shorter than the
quickest 504 seen.
"""

from __future__ import annotations

import math
import threading
from collections import deque

RECENT = 1000  # answers the hedge delay is taken from
REFRESH_EVERY = 50  # answers between two updates of the delay


class HedgePolicy:
    def __init__(self, budget: float) -> None:
        if not 0 <= budget < 1:
            raise ValueError("the hedge budget is a fraction of the calls, in [0, 1)")
        self.budget = budget
        self.quantile = 1 - budget / 2
        # No hedging until the percentile is measured: at least two answers above it
        # (200 for the default budget), so small windows are never hedged on a guess.
        self.min_answers = math.ceil(2 / (1 - self.quantile)) if budget else 0
        self.calls = 0
        self.hedges = 0
        self.delay: float | None = None  # seconds; None until enough answers are known
        self.median: float | None = None  # seconds, of the same recent answers
        self.gateway_cut: float | None = None  # seconds to the quickest 504 seen
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._since_refresh = 0
        self._lock = threading.Lock()

    def started(self) -> None:
        """Count a call that is not a hedge."""
        with self._lock:
            self.calls += 1

    def answered(self, latency: float) -> None:
        """Learn the latency of a successful answer."""
        with self._lock:
            self._recent.append(latency)
            self._since_refresh += 1
            if self._since_refresh >= REFRESH_EVERY and len(self._recent) >= self.min_answers:
                self._since_refresh = 0
                ordered = sorted(self._recent)
                self.delay = ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))]
                self.median = ordered[len(ordered) // 2]

    def gateway_timeout(self, latency: float) -> None:
        """Learn that a gateway answered 504 after `latency` seconds."""
        with self._lock:
            if self.gateway_cut is None or latency < self.gateway_cut:
                self.gateway_cut = latency

    @property
    def can_win(self) -> bool:
        """Whether a copy sent now could answer before a gateway cuts the first call."""
        if self.gateway_cut is None or self.delay is None or self.median is None:
            return True
        return self.delay + self.median < self.gateway_cut

    def spend(self) -> bool:
        """Take one hedge out of the budget; False when it has no room."""
        with self._lock:
            if self.delay is None or self.hedges + 1 > self.budget * self.calls:
                return False
            self.hedges += 1
            return True

    def refund(self) -> None:
        """Give back a hedge that was not sent after all."""
        with self._lock:
            self.hedges -= 1
