"""Local simulator of the CDN statistics API (contract: ../shared/cdn-api.md).

Serves the contract on 127.0.0.1 with values that are a pure function of
(domain, minute), so a test can check every stored number with `true_metrics`.
It models the vendor's small stats DB (a fixed number of DB workers behind a
gateway that answers 504 when a request waits too long) and injects the faults
seen in production. Never deployed to Composer.

    python -m tools.cdn_api_simulator --port 8700 --domains 50 --capacity 8

A request is in flight from its arrival until it is answered or its client hangs up;
its DB work goes on either way (a hung query holds its DB worker).

Control endpoints (not part of the contract, no token): GET /_sim/stats,
POST /_sim/reset (counters), POST /_sim/config (JSON of SimConfig fields).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

ENDPOINT_COLUMNS: dict[str, tuple[str, ...]] = {
    "traffic": ("bytes", "bps", "requests"),
    "status": ("status_2xx", "status_3xx", "status_4xx", "status_5xx", "error_ratio"),
    "cache": ("hit", "miss", "hit_ratio"),
}
STATUS_SUMMARY_COLUMNS = ("requests", "error_ratio")
EXTRA_COLUMN = "edge_region"
NONFINITE_COLUMN = "jitter_ms"  # a column the contract does not name, sent as -Infinity
FLOAT_METRICS = {"traffic": "bps", "status": "error_ratio", "cache": "hit_ratio"}
SPIKE_KINDS = ("5xx", "cache", "drop")
RESET_STATUS = 599  # internal marker for a dropped connection

HOSTILE_DOMAINS = (
    "quote'single.example.net",
    'quote"double.example.net',
    "x'); DROP TABLE raw_cdn_minutes; --.example.net",
    "도메인.한국",
    "emoji-🚀.example.net",
    "back\\slash.example.net",
    "space and %20 percent.example.net",
    "{{ ds }}.example.net",
    # Slack control sequences and markup: a message naming them must show them inert
    "<!channel>.example.net",
    "<!here|x>.example.net",
    "<https://evil.example|login>.example.net",
    "*bold*_x_~y~.example.net",
)


@dataclass
class SimConfig:
    """Everything the simulator can be told; rates are fractions in [0, 1]."""

    domains: int = 20
    hostile: bool = False  # add HOSTILE_DOMAINS to the domain list
    token: str = "dev-token"  # noqa: S105 - the local development token, not a secret
    capacity: int = 64  # concurrent DB workers
    latency_ms: float = 40.0  # mean DB time per request (log-normal)
    latency_sigma: float = 0.25
    gateway_timeout_ms: float = 0.0  # 0 = no gateway limit; else 504 past it
    available_after_s: float = 60.0  # a minute is served this long after it ends
    seed: int = 1
    # transient faults, drawn at random per request
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_5xx: float = 0.0  # half 500, half 503
    rate_reset: float = 0.0  # TCP reset instead of a response
    rate_rtcode: float = 0.0  # HTTP 200 with rtcode "500"
    rate_slow: float = 0.0
    slow_ms: float = 3000.0
    # data faults, a deterministic function of (domain, minute, endpoint)
    rate_empty: float = 0.0  # data: [] ...
    empty_calls: int = -1  # ... for this many calls of that key (-1: always)
    rate_reorder: float = 0.0  # shuffled columns, an extra column, a neighbour row
    rate_null: float = 0.0  # a metric value is null
    # outside the contract: the float metric is NaN or Infinity and an extra column
    # (NONFINITE_COLUMN) is -Infinity, as a vendor's JSON encoder may write them
    rate_nonfinite: float = 0.0
    # persistent failure: "<endpoint>" or "<endpoint>:<domain>" always answers 500
    failing: tuple[str, ...] = ()
    # injected incidents, "<domain>:<start unix seconds>:<minutes>:<kind>"; kinds: 5xx (30%
    # of requests answer 5xx), cache (hit ratio 10%), drop (2% of the usual requests)
    spikes: tuple[str, ...] = ()

    def spike_at(self, domain: str, minute: int) -> str | None:
        """The kind of incident injected for this domain-minute, if any."""
        for spike in self.spikes:
            name, start, minutes, kind = spike.rsplit(":", 3)  # a domain may hold ':'
            if name == domain and int(start) <= minute < int(start) + 60 * int(minutes):
                return kind
        return None

    def domain_list(self) -> list[str]:
        names = [f"d{i:05d}.example.net" for i in range(self.domains)]
        return names + list(HOSTILE_DOMAINS) if self.hostile else names

    def updated(self, changes: dict[str, Any]) -> SimConfig:
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - fields
        if unknown:
            raise ValueError(f"unknown simulator settings: {sorted(unknown)}")
        for name in ("failing", "spikes"):
            if name in changes:
                changes = {**changes, name: tuple(changes[name])}
        for spike in changes.get("spikes", ()):
            if len(spike.rsplit(":", 3)) != 4 or spike.rsplit(":", 1)[-1] not in SPIKE_KINDS:
                raise ValueError(f"a spike is domain:start:minutes:{'|'.join(SPIKE_KINDS)}")
        return dataclasses.replace(self, **changes)


def fraction(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) for the given key."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def true_metrics(domain: str, minute: int, endpoint: str, config: SimConfig) -> dict[str, Any]:
    """The values the simulator serves for one (domain, minute, endpoint): the truth."""
    h = hashlib.blake2b(f"{domain}\x1f{minute}".encode(), digest_size=16).digest()
    spike = config.spike_at(domain, minute)
    requests = 1_000 + int.from_bytes(h[0:4], "big") % 1_000_000
    requests = requests // 50 if spike == "drop" else requests
    size = requests * (500 + int.from_bytes(h[4:6], "big") % 50_000)
    s5, s4, s3 = (requests * (h[i] % m) // 100 for i, m in ((6, 5), (7, 10), (8, 20)))
    s5 = requests * 30 // 100 if spike == "5xx" else s5
    hit = requests * (10 if spike == "cache" else 50 + h[9] % 50) // 100
    values: dict[str, Any] = {
        "traffic": {"bytes": size, "bps": round(size * 8 / 60, 1), "requests": requests},
        "status": {
            "status_2xx": requests - s3 - s4 - s5,
            "status_3xx": s3,
            "status_4xx": s4,
            "status_5xx": s5,
            "error_ratio": round((s4 + s5) / requests, 6),
        },
        "cache": {"hit": hit, "miss": requests - hit, "hit_ratio": round(hit / requests, 6)},
    }[endpoint]
    if config.rate_null:
        for name in values:
            if fraction(config.seed, "null", domain, minute, endpoint, name) < config.rate_null:
                values[name] = None
    return values


def is_reordered(domain: str, minute: int, endpoint: str, config: SimConfig) -> bool:
    return fraction(config.seed, "reorder", domain, minute, endpoint) < config.rate_reorder


def is_nonfinite(domain: str, minute: int, endpoint: str, config: SimConfig) -> bool:
    return fraction(config.seed, "nonfinite", domain, minute, endpoint) < config.rate_nonfinite


def is_empty(domain: str, minute: int, endpoint: str, config: SimConfig) -> bool:
    return fraction(config.seed, "empty", domain, minute, endpoint) < config.rate_empty


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.db = asyncio.Semaphore(config.capacity)
        self.empty_calls: Counter[tuple[str, int, str]] = Counter()
        self.domains = config.domain_list()
        self.known_domains = set(self.domains)
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.db_busy = 0
        self.max_db_busy = 0
        self.by_status: Counter[str] = Counter()
        self.by_endpoint: Counter[str] = Counter()
        self.empty_calls.clear()

    def configure(self, changes: dict[str, Any]) -> None:
        self.config = self.config.updated(changes)
        self.rng = random.Random(self.config.seed)
        self.db = asyncio.Semaphore(self.config.capacity)
        self.domains = self.config.domain_list()
        self.known_domains = set(self.domains)

    def stats(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "max_db_busy": self.max_db_busy,
            "by_status": dict(self.by_status),
            "by_endpoint": dict(self.by_endpoint),
        }

    async def _db_work(self, seconds: float) -> None:
        async with self.db:
            self.db_busy += 1
            self.max_db_busy = max(self.max_db_busy, self.db_busy)
            try:
                await asyncio.sleep(seconds)
            finally:
                self.db_busy -= 1

    def _latency(self) -> float:
        cfg = self.config
        if cfg.rate_slow and self.rng.random() < cfg.rate_slow:
            return cfg.slow_ms / 1000
        mu = math.log(cfg.latency_ms / 1000) - cfg.latency_sigma**2 / 2  # mean == latency_ms
        return self.rng.lognormvariate(mu, cfg.latency_sigma)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        self.calls += 1
        self.by_endpoint[endpoint] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await self._respond(request, endpoint)
        except asyncio.CancelledError:  # the client hung up: the request is no longer in flight
            self.by_status["abandoned"] += 1
            raise
        finally:
            self.in_flight -= 1
        self.by_status["reset" if response.status == RESET_STATUS else str(response.status)] += 1
        return response

    async def _respond(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        cfg, rng = self.config, self.rng
        if request.headers.get("Authorization") != f"Token {cfg.token}":
            return _body(401, "401", message="invalid token")
        if endpoint not in ENDPOINT_COLUMNS and endpoint != "domain_list":
            return _body(404, "404", message="no such endpoint")
        if cfg.rate_reset and rng.random() < cfg.rate_reset:
            return _reset(request)
        if cfg.rate_429 and rng.random() < cfg.rate_429:
            return _body(429, "429", message="rate limited", retry_after=cfg.retry_after_s)
        # The DB keeps working after the gateway or the client gives up on the request.
        work = asyncio.ensure_future(self._db_work(self._latency()))
        done, _ = await asyncio.wait({work}, timeout=cfg.gateway_timeout_ms / 1000 or None)
        if not done:
            return _body(504, "504", message="gateway timeout")
        if cfg.rate_5xx and rng.random() < cfg.rate_5xx:
            status = rng.choice((500, 503))
            return _body(status, str(status), message="upstream error")
        if cfg.rate_rtcode and rng.random() < cfg.rate_rtcode:
            return _body(200, "500", message="stats db error")
        if endpoint == "domain_list":
            return _body(200, "200", metric=["domain_list"], data=self.domains)
        return self._stats_body(request, endpoint)

    def _stats_body(self, request: web.Request, endpoint: str) -> web.Response:
        cfg, query = self.config, request.query
        domain, step = query.get("domain_name", ""), query.get("step", "")
        try:
            minute = int(query.get("date", ""))
        except ValueError:
            minute = -1
        if minute < 0 or minute % 60 or step not in ("1m", "5m"):
            return _body(400, "400", message="date must be unix seconds at a minute; step 1m or 5m")
        if step == "5m":
            return _body(400, "400", message="the simulator serves step=1m only")
        if domain not in self.known_domains:
            return _body(400, "403", message="domain not allowed for this token")
        if endpoint in cfg.failing or f"{endpoint}:{domain}" in cfg.failing:
            return _body(500, "500", message="persistent failure")
        detail = endpoint != "status" or query.get("show") == "detail"
        columns = ["date", *(ENDPOINT_COLUMNS[endpoint] if detail else STATUS_SUMMARY_COLUMNS)]
        if self._is_unavailable(domain, minute, endpoint):
            return _body(200, "200", domain=domain, step=step, metric=columns, data=[])
        minutes = [minute]
        if is_reordered(domain, minute, endpoint, cfg):
            columns = [EXTRA_COLUMN, *reversed(columns)]
            minutes = [minute - 60, minute]  # a neighbour row first: rows are matched by date
        if is_nonfinite(domain, minute, endpoint, cfg):
            columns = [*columns, NONFINITE_COLUMN]
        rows = [self._row(domain, m, endpoint, columns) for m in minutes]
        return _body(200, "200", domain=domain, step=step, metric=columns, data=rows)

    def _is_unavailable(self, domain: str, minute: int, endpoint: str) -> bool:
        cfg = self.config
        if time.time() < minute + 60 + cfg.available_after_s:
            return True
        if not is_empty(domain, minute, endpoint, cfg):
            return False
        if cfg.empty_calls < 0:
            return True
        key = (domain, minute, endpoint)
        self.empty_calls[key] += 1
        return self.empty_calls[key] <= cfg.empty_calls

    def _row(self, domain: str, minute: int, endpoint: str, columns: list[str]) -> list[Any]:
        values = true_metrics(domain, minute, endpoint, self.config)
        if "requests" in columns and "requests" not in values:  # status summary
            traffic = true_metrics(domain, minute, "traffic", self.config)
            values = {"requests": traffic["requests"], "error_ratio": values["error_ratio"]}
        values |= {"date": minute, EXTRA_COLUMN: "ap-northeast-2"}
        if NONFINITE_COLUMN in columns:
            ratio = FLOAT_METRICS[endpoint]
            values[ratio] = math.nan if minute % 120 else math.inf
            values[NONFINITE_COLUMN] = -math.inf
        return [values[c] for c in columns]


def _body(
    status: int, rtcode: str, retry_after: float | None = None, **fields: Any
) -> web.Response:
    body = {"reqid": f"r-{random.getrandbits(32):08x}", "reqtime": _reqtime(), "rtcode": rtcode}
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return web.Response(
        status=status,
        body=json.dumps(body | fields, ensure_ascii=False).encode(),
        content_type="application/json",
        headers=headers,
    )


def _reqtime() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def _reset(request: web.Request) -> web.StreamResponse:
    """Drop the connection with a TCP RST, as a crashing upstream does."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return web.Response(status=RESET_STATUS)  # never sent


def build_app(config: SimConfig) -> web.Application:
    sim = Simulator(config)
    app = web.Application()

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(sim.stats())

    async def reset(_: web.Request) -> web.Response:
        sim.reset()
        return web.json_response(sim.stats())

    async def configure(request: web.Request) -> web.Response:
        try:
            sim.configure(await request.json())
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(dataclasses.asdict(sim.config))

    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_post("/_sim/config", configure)
    app.router.add_get("/v2/cdn/{endpoint}", sim.handle)
    return app


def _parse_args(argv: list[str] | None) -> tuple[str, int, SimConfig]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    for field in dataclasses.fields(SimConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, action="store_true")
        elif field.name in ("failing", "spikes"):
            parser.add_argument(flag, nargs="*", default=[])
        else:
            parser.add_argument(flag, type=type(field.default), default=field.default)
    args = vars(parser.parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    return host, port, SimConfig().updated(args)


async def serve(host: str, port: int, config: SimConfig) -> None:
    # handler_cancellation: a request whose client hangs up stops counting as in flight.
    runner = web.AppRunner(build_app(config), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0]
    print(json.dumps({"url": f"http://{bound[0]}:{bound[1]}"}), flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    host, port, config = _parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, config))


if __name__ == "__main__":
    main()
