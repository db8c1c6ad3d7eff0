"""Client for the CDN statistics API (../shared/cdn-api.md).

One client serves one window: it lists the domains, then fetches every
(domain, endpoint, minute) through one bounded worker pool, gated by an
adaptive concurrency limit, retrying transient failures with tenacity, and
yields one record per (domain, minute) as soon as its three endpoints are done.
A call that is slow to answer is hedged: see hedging.py.

urllib3 is used directly rather than requests: it is what requests runs on, and
skipping requests' per-call session machinery halves the client's CPU per call.
"""

from __future__ import annotations

import logging
import math
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base
from urllib3.util.wait import wait_for_read

from dag_utils.cdn_api.hedging import HedgePolicy
from dag_utils.cdn_api.limiter import AdaptiveLimit
from dag_utils.cdn_api.parse import (
    ENDPOINTS,
    MalformedResponse,
    domain_names,
    parse_body,
    retry_after_seconds,
    rows_by_minute,
    without_nonfinite,
)
from dag_utils.cdn_api.stats import RunStats

log = logging.getLogger(__name__)

NOT_AVAILABLE = "not_available"  # reason prefix of an endpoint whose data is not there yet
NONFINITE = "non_finite"  # reason prefix of an endpoint that sent NaN or Infinity
OVERLOAD_STATUSES = frozenset({429, 502, 503, 504})
_MAX_DETAIL = 200
_DONE = object()  # the last worker's sign that every record has been handed over
_TRANSPORT_ERRORS = (OSError, HTTPException, urllib3.exceptions.HTTPError)
MIN_HEDGE_DELAY_S = 0.01  # also how often a slow call looks again whether it may be hedged
ABANDON_WAIT_S = 1.0  # at most this long for the API to close an abandoned request


@dataclass(frozen=True)
class ClientSettings:
    max_concurrency: int = 64  # hard ceiling on requests in flight
    initial_concurrency: int = 4  # where the adaptive limit starts (slow start)
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 15.0
    max_attempts: int = 6
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 10.0
    retry_after_max_s: float = 120.0
    hedge_budget: float = 0.02  # hedges may add this fraction of the calls; 0 turns them off
    window_deadline_s: float = 240.0  # everything after this is reported, not fetched
    progress_every_s: float = 10.0


@dataclass(slots=True)
class DomainMinute:
    """One (domain, minute): the metrics of each endpoint, and why an endpoint has none."""

    domain: str
    minute: int
    metrics: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.errors and not self.missing

    @property
    def missing(self) -> tuple[str, ...]:
        """The endpoints with no metrics yet."""
        return tuple(e for e in ENDPOINTS if self.metrics.get(e) is None)

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "minute": self.minute,
            "metrics": {e: self.metrics.get(e) for e in ENDPOINTS},
            "errors": dict(self.errors),
        }


class ApiError(Exception):
    """A call that failed; `cause` is a short label used for statistics."""

    def __init__(self, cause: str, detail: str = "") -> None:
        super().__init__(f"{cause}: {detail}" if detail else cause)
        self.cause = cause


class RetryableError(ApiError):
    def __init__(
        self, cause: str, detail: str = "", overload: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(cause, detail)
        self.overload = overload
        self.retry_after = retry_after
        self.attempts = 1


class RejectedError(ApiError):
    """A 4xx answer: retrying the same request cannot help."""


class AuthError(ApiError):
    """The API rejected the token; the whole run stops."""


class DeadlineError(ApiError):
    """The window's deadline passed before this call could be made."""


class CdnApiClient:
    def __init__(self, base_url: str, token: str, settings: ClientSettings | None = None) -> None:
        self.settings = settings = settings or ClientSettings()
        api_url = _api_url(base_url)
        self._path = urllib3.util.parse_url(api_url).path
        self._pool = urllib3.connection_from_url(
            api_url,
            maxsize=settings.max_concurrency,
            block=True,
            retries=False,
            headers={"Authorization": f"Token {token}"},
        )
        self.limit = AdaptiveLimit(settings.max_concurrency, settings.initial_concurrency)
        self.stats = RunStats()
        self._hedging = HedgePolicy(settings.hedge_budget)
        self._deadline = time.monotonic() + settings.window_deadline_s
        self._abort = threading.Event()

    def __repr__(self) -> str:  # never shows the token
        return f"CdnApiClient({self._pool.host!r})"

    def list_domains(self) -> list[str]:
        """The domains the token may read; raises ApiError when they cannot be had."""
        body = self._with_retries(lambda: self._call("domain_list", {}))
        return domain_names(body)

    def fetch_window(
        self, domains: Sequence[str], minutes: Sequence[int]
    ) -> Iterator[DomainMinute]:
        """One record per (domain, minute) of the window, yielded as each completes."""
        return self.fetch(DomainMinute(d, m) for d in domains for m in minutes)

    def fetch(self, records: Iterable[DomainMinute]) -> Iterator[DomainMinute]:
        """Fetch each record's missing endpoints into it; yield it when they are all done.

        Each pool worker takes the next call, makes it and files the outcome into its
        record, so a call costs one thread's round trip and the consumer wakes once per
        record. `records` is read lazily, one at a time as workers need calls, and workers
        wait when the consumer falls behind: memory holds the records in flight, not the
        window. A (domain, minute) may not be asked for again while in flight; a record
        missing nothing is skipped.
        """
        calls_left: dict[tuple[str, int], int] = {}  # of the records in flight

        def plan() -> Iterator[tuple[DomainMinute, str]]:  # runs under `lock`
            for record in records:
                key, missing = (record.domain, record.minute), record.missing
                if key in calls_left:
                    raise ValueError(f"{key} was asked for twice")
                if missing:
                    calls_left[key] = len(missing)
                    for endpoint in missing:
                        yield record, endpoint

        calls = plan()
        workers = self.settings.max_concurrency
        finished: queue.Queue[Any] = queue.Queue(maxsize=4 * workers)
        lock = threading.Lock()
        running = [workers]

        def work() -> None:
            try:
                while not self._abort.is_set():
                    with lock:
                        call = next(calls, None)
                    if call is None:
                        break
                    record, endpoint = call
                    key = (record.domain, record.minute)
                    metrics, error = self._fetch(*key, endpoint)
                    with lock:
                        record.metrics[endpoint] = metrics
                        if error:
                            record.errors[endpoint] = error
                        else:
                            record.errors.pop(endpoint, None)
                        calls_left[key] -= 1
                        if calls_left[key]:
                            continue
                        del calls_left[key]
                    self._count(record)
                    self._hand_over(finished, record)
            except BaseException as exc:  # noqa: BLE001 - the consuming thread re-raises it
                self._hand_over(finished, exc)
                self._abort.set()
            with lock:
                running[0] -= 1
                last = running[0] == 0
            if last:  # every record is handed over before this
                self._hand_over(finished, _DONE)

        pool = ThreadPoolExecutor(workers, thread_name_prefix="cdn-api")
        for _ in range(workers):
            pool.submit(work)
        try:
            while (item := self._next_finished(finished)) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._abort.set()  # stops the workers when the consumer leaves early
            pool.shutdown(wait=True)
            self._abort.clear()
            log.info("CDN API run: %s", self.summary())

    def _hand_over(self, finished: queue.Queue, item: DomainMinute | BaseException) -> None:
        while not self._abort.is_set():
            try:
                finished.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next_finished(self, finished: queue.Queue) -> Any:
        while True:
            try:
                return finished.get(timeout=self.settings.progress_every_s)
            except queue.Empty:
                self._log_progress()

    def summary(self) -> dict[str, Any]:
        return self.stats.summary(
            max_in_flight=self.limit.max_in_flight,
            limit_min=round(self.limit.min_limit, 1),
            limit_max=round(self.limit.max_limit, 1),
            limit_final=round(self.limit.limit, 1),
            hedge_delay_ms=round(delay * 1000, 1) if (delay := self._hedging.delay) else None,
        )

    def _fetch(self, domain: str, minute: int, endpoint: str) -> tuple[dict | None, str | None]:
        """(metrics, None), or (None, why) for an endpoint with no usable row."""
        params: dict[str, Any] = {"date": minute, "domain_name": domain, "step": "1m"}
        if endpoint == "status":
            params["show"] = "detail"

        def attempt() -> dict[int, dict[str, Any]]:
            body = self._call(endpoint, params)
            try:
                if body.get("domain", domain) != domain:
                    raise MalformedResponse("the answer is for another domain")
                return rows_by_minute(body, endpoint)
            except MalformedResponse as exc:
                raise RetryableError("malformed", str(exc)) from exc

        try:
            rows = self._with_retries(attempt)
        except RejectedError as exc:
            return None, _reason("rejected", exc)
        except DeadlineError as exc:
            return None, _reason("deadline", exc)
        except RetryableError as exc:
            return None, _reason(f"failed after {exc.attempts} attempts", exc)
        if minute in rows:
            metrics, nonfinite = without_nonfinite(rows[minute])
            if nonfinite:  # kept as null, and said why; the row is fetched again later
                return metrics, f"{NONFINITE}: {', '.join(nonfinite)} stored as null"
            return metrics, None
        return None, f"{NOT_AVAILABLE}: no row for this minute yet"

    def _with_retries(self, attempt: Callable[[], Any]) -> Any:
        s = self.settings
        retrying = Retrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(s.max_attempts) | _StopAt(self._deadline),
            wait=_BackoffOrRetryAfter(s.backoff_initial_s, s.backoff_max_s, s.retry_after_max_s),
            before_sleep=self._count_retry,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except RetryableError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 0)
            raise

    def _sleep(self, seconds: float) -> None:
        if self._abort.wait(seconds):
            raise DeadlineError("aborted", "the run is stopping")

    def _count_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.stats.retry(exc.cause if isinstance(exc, ApiError) else "other")

    def _call(self, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        """One call, classified; hedged when it is slow. Each request holds a slot."""
        remaining = self._deadline - time.monotonic()
        if remaining <= 0 or self._abort.is_set():
            raise DeadlineError("deadline", "the window's deadline passed before this call")
        url = f"{self._path}{endpoint}?{urlencode(params, quote_via=quote)}"
        attempts: list[_Attempt] = []
        try:
            winner, response = self._first_answer(url, attempts, remaining)
            try:
                body = _check(response)
            except RetryableError as exc:
                winner.overload = exc.overload
                if exc.cause == "http_504" and winner.answered_in is not None:
                    self._hedging.gateway_timeout(winner.answered_in)
                raise
            winner.latency = winner.answered_in
            self._hedging.answered(winner.answered_in)
            return body
        finally:
            for attempt in attempts:
                self._end(attempt)

    def _first_answer(
        self, url: str, attempts: list[_Attempt], remaining: float
    ) -> tuple[_Attempt, urllib3.BaseHTTPResponse]:
        """Send the call, hedge it once it outlasts the hedge delay, read the first answer."""
        self._hedging.started()
        attempts.append(self._send(url, self.limit.acquire()))
        read_timeout = min(self.settings.read_timeout_s, remaining)
        give_up = attempts[0].started + read_timeout
        hedge_at = self._hedge_at(attempts[0].started, give_up)
        held = False
        while not (ready := _first_readable(attempts, (hedge_at or give_up) - time.monotonic())):
            now = time.monotonic()
            if now >= give_up:
                attempts[0].overload = True
                raise RetryableError("timeout", f"no answer in {read_timeout:g} s", overload=True)
            if hedge_at is not None and now >= hedge_at:
                may_hedge = self.limit.calm and self._hedging.can_win
                if not may_hedge and not held:
                    self.stats.count("hedges_held")  # once per call
                held = held or not may_hedge
                hedge = self._hedge(url, attempts[0]) if may_hedge else None
                if hedge is not None:
                    attempts.append(hedge)
                hedge_at = None if hedge else min(now + MIN_HEDGE_DELAY_S, give_up)
        for attempt in attempts:
            if attempt is not ready:
                self.stats.count("abandoned")
        if ready is not attempts[0]:
            self.stats.count("hedge_wins")
        return ready, self._read(ready, give_up)

    def _hedge_at(self, since: float, give_up: float) -> float | None:
        """When to look again at hedging a call unanswered since `since`; None: never."""
        if not self._hedging.budget:
            return None
        wait = max(self._hedging.delay or 0.0, MIN_HEDGE_DELAY_S)
        return min(since + wait, give_up)

    def _hedge(self, url: str, first: _Attempt) -> _Attempt | None:
        """A copy of a slow call, sent if the budget has room."""
        if not self._hedging.spend():
            return None
        token = self.limit.acquire_spare()
        if token is None or _first_readable([first], 0) is not None:
            if token is not None:
                self.limit.release(token)
            self._hedging.refund()
            return None
        self.stats.count("hedges")
        try:
            return self._send(url, token)
        except RetryableError:
            return None  # the copy could not be sent; the first call goes on

    def _send(self, url: str, token: int) -> _Attempt:
        """Send one request on a pooled connection; its slot is given back if it fails."""
        # urlopen() would block until the answer; hedging needs the request sent and the
        # socket polled, so connections are taken from the pool and given back as urlopen
        # itself does it (_get_conn/_put_conn).
        try:
            conn = self._pool._get_conn()
        except BaseException:
            self.limit.release(token)
            raise
        attempt = _Attempt(conn, token, time.monotonic())
        try:
            conn.timeout = self.settings.connect_timeout_s
            conn.request("GET", url, headers=self._pool.headers)
        except BaseException as exc:
            error = _transport_error(exc) if isinstance(exc, _TRANSPORT_ERRORS) else None
            attempt.overload = error is not None and error.overload
            self._end(attempt)
            if error is None:
                raise
            raise error from None
        return attempt

    def _read(self, attempt: _Attempt, give_up: float) -> urllib3.BaseHTTPResponse:
        attempt.conn.timeout = max(give_up - time.monotonic(), 0.001)
        try:
            response = attempt.conn.getresponse()
        except _TRANSPORT_ERRORS as exc:
            error = _transport_error(exc)
            attempt.overload = error.overload
            raise error from None
        attempt.answered_in = time.monotonic() - attempt.started
        return response

    def _end(self, attempt: _Attempt) -> None:
        """Give back the connection, then the slot: an unanswered request keeps its slot
        until its connection is closed."""
        if attempt.answered_in is not None:
            self._pool._put_conn(attempt.conn)
        else:
            _hang_up(attempt.conn)
            self._pool._put_conn(None)
        self.limit.release(attempt.token, attempt.overload, attempt.latency)
        self.stats.call(attempt.latency)

    def _count(self, record: DomainMinute) -> None:
        waiting = [e for e in record.errors.values() if e.startswith(NOT_AVAILABLE)]
        failures = [
            e.split(" ", 1)[0].rstrip(":") for e in record.errors.values() if e not in waiting
        ]
        self.stats.record(record.complete, failures, len(waiting))

    def _log_progress(self) -> None:
        s = self.stats
        log.info(
            "progress: %d records (%d incomplete), %d calls, limit %.0f, in flight %d, %d retries",
            s.complete + s.incomplete,
            s.incomplete,
            s.calls,
            self.limit.limit,
            self.limit.in_flight,
            sum(s.retries.values()),
        )


@dataclass(slots=True)
class _Attempt:
    """One request on its own connection, holding a concurrency slot until it ends."""

    conn: urllib3.connection.HTTPConnection
    token: int
    started: float
    answered_in: float | None = None  # seconds to the answer, once it is read
    latency: float | None = None  # for the limiter: set only for a usable answer
    overload: bool = False


def _first_readable(attempts: list[_Attempt], timeout: float) -> _Attempt | None:
    """The first attempt whose answer (or closed connection) is waiting, or None."""
    poller = select.poll()
    by_fd = {}
    for attempt in attempts:
        by_fd[attempt.conn.sock.fileno()] = attempt
        poller.register(attempt.conn.sock, select.POLLIN)
    events = poller.poll(math.ceil(max(timeout, 0.0) * 1000))
    return by_fd[events[0][0]] if events else None


def _hang_up(conn: urllib3.connection.HTTPConnection) -> None:
    """Close a connection whose request is unanswered once the API has let go of it.

    Half-closing and waiting for the API to close its end keeps the request counted in
    flight for as long as the API counts it; an API that ignores the half-close is cut
    off after ABANDON_WAIT_S. A late answer is read and thrown away.
    """
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_WR)
            until = time.monotonic() + ABANDON_WAIT_S
            while wait_for_read(sock, max(until - time.monotonic(), 0.0)) and sock.recv(65536):
                pass
        except OSError:
            pass
    conn.close()


def _transport_error(exc: BaseException) -> RetryableError:
    if isinstance(exc, (TimeoutError, urllib3.exceptions.TimeoutError)):
        return RetryableError("timeout", type(exc).__name__, overload=True)
    return RetryableError("connection", type(exc).__name__)


def _check(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    status = response.status
    if status == 401:
        raise AuthError("http_401", "the API rejected the token")
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        raise RetryableError("http_429", overload=True, retry_after=retry_after)
    if status >= 500:
        raise RetryableError(f"http_{status}", overload=status in OVERLOAD_STATUSES)
    try:
        body = parse_body(response.data)
    except MalformedResponse as exc:
        if status != 200:
            raise RejectedError(f"http_{status}") from None
        raise RetryableError("malformed", str(exc)) from None
    if status != 200:
        raise RejectedError(f"http_{status}", _text(body.get("message")))
    rtcode = body["rtcode"]
    if rtcode == "401":
        raise AuthError("rtcode_401", "the API rejected the token")
    if rtcode != "200":
        label = rtcode if rtcode.isdigit() and len(rtcode) <= 4 else "other"
        raise RetryableError(f"rtcode_{label}", _text(body.get("message")))
    return body


class _StopAt(stop_base):
    """Stop when the next attempt would start after the deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, state: RetryCallState) -> bool:
        return time.monotonic() + (state.upcoming_sleep or 0) >= self.deadline


class _BackoffOrRetryAfter:
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float, retry_after_max: float) -> None:
        self.backoff = wait_exponential_jitter(initial=initial, max=maximum, jitter=initial)
        self.retry_after_max = retry_after_max

    def __call__(self, state: RetryCallState) -> float:
        wait = self.backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self.retry_after_max))
        return wait


def _api_url(base_url: str) -> str:
    """`{base}/v2/cdn/` for a base URL given with or without that path."""
    base = base_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError("the CDN API base URL must start with http:// or https://")
    return (base if base.endswith("/v2/cdn") else f"{base}/v2/cdn") + "/"


def _reason(kind: str, exc: ApiError) -> str:
    return f"{kind}: {exc}"[:_MAX_DETAIL]


def _text(value: object) -> str:
    return str(value)[:_MAX_DETAIL] if value is not None else ""
