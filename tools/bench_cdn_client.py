"""`make bench`: the CDN API client against the simulator, five kinds of API.

Each row prints wall time, the capacity bound (calls / capacity x mean latency: the
fastest any client can go without overloading the API), their ratio, client CPU per
call, completeness, the extra calls (calls beyond one per endpoint: retries and hedges),
and the most calls the API saw in flight against the client's ceiling. The simulator
runs in its own process, so CPU is the client's alone.

Targets with default client settings: wall <= 1.3x the bound on the sized and undersized
APIs, <= 0.5 ms CPU per call, 100% complete under 5% transient faults, zero lost minutes
on the undersized API; with 0.2% of calls hanging for 30 s: <= 1.5x the bound, <= 2% extra
calls, 100% complete, max in flight <= the ceiling, and on an undersized API zero lost
minutes and no more gateway timeouts (504) with hedging than without.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import time
from dataclasses import dataclass

import urllib3

from dag_utils.cdn_api import CdnApiClient, ClientSettings
from tools.cdn_api_simulator import SimConfig
from tools.local_servers import CdnApiSimulator

MINUTE = 1795428000  # 2026-11-23T10:00Z
TRANSIENT_5PCT = {"rate_429": 0.01, "rate_5xx": 0.015, "rate_reset": 0.01, "rate_rtcode": 0.015}
SLOW_TAIL = {"rate_slow": 0.002, "slow_ms": 30_000}  # a stats DB query that hangs
UNDERSIZED = {"capacity": 4, "gateway_timeout_ms": 150}


@dataclass(frozen=True)
class Scenario:
    api: dict
    domains: int | None = None  # None: --domains
    minutes: int = 1
    hedging: bool = True


SCENARIOS = {
    "sized API (capacity 64)": Scenario({"capacity": 64}),
    "undersized API (capacity 4, gateway 150 ms)": Scenario(UNDERSIZED),
    "5% transient faults (capacity 64)": Scenario({"capacity": 64, **TRANSIENT_5PCT}),
    "slow tail: 0.2% hang 30 s (capacity 32)": Scenario({"capacity": 32, **SLOW_TAIL}, 300, 5),
    "slow tail, hedging off": Scenario({"capacity": 32, **SLOW_TAIL}, 300, 5, hedging=False),
    "slow tail, undersized": Scenario({**UNDERSIZED, **SLOW_TAIL}, 300, 5),
    "slow tail, undersized, hedging off": Scenario(
        {**UNDERSIZED, **SLOW_TAIL}, 300, 5, hedging=False
    ),
}


def run(sim: CdnApiSimulator, scenario: Scenario, domains: int, latency_ms: float) -> dict:
    defaults = dataclasses.asdict(SimConfig(available_after_s=0))  # no fault of an earlier row
    del defaults["token"]
    sim.configure(**{**defaults, "domains": domains, "latency_ms": latency_ms, **scenario.api})
    settle(sim)
    sim.reset()
    settings = ClientSettings(hedge_budget=ClientSettings.hedge_budget if scenario.hedging else 0)
    client = CdnApiClient(sim.url, "dev-token", settings)
    minutes = [MINUTE + 60 * i for i in range(scenario.minutes)]
    records = list(client.fetch_window(client.list_domains(), minutes))
    summary = client.summary()
    server = sim.stats()
    needed = domains * len(minutes) * 3 + 1
    bound = needed / scenario.api["capacity"] * latency_ms / 1000
    extra = summary["calls"] - needed
    return {
        "wall_s": summary["wall_s"],
        "bound_s": round(bound, 2),
        "ratio": round(summary["wall_s"] / bound, 2),
        "cpu_ms_per_call": round(summary["cpu_s"] * 1000 / summary["calls"], 3),
        "complete_pct": round(100 * summary["complete"] / len(records), 2),
        "extra_calls": f"{extra} ({100 * extra / needed:.1f}%)",
        "hedges": summary["hedges"],
        "max_in_flight": f"{server['max_in_flight']}/{settings.max_concurrency}",
        "gateway_504s": server["by_status"].get("504", 0),
        "lost_minutes": summary["incomplete"],
        "calls": summary["calls"],
        "retries": summary["retries_by_cause"],
        "hedge_wins": summary["hedge_wins"],
        "abandoned": summary["abandoned"],
        "hedge_delay_ms": summary["hedge_delay_ms"],
        "limit_min_max": f"{summary['limit_min']:g}..{summary['limit_max']:g}",
        "p50_p95_ms": f"{summary['latency_p50_ms']}/{summary['latency_p95_ms']}",
    }


def settle(sim: CdnApiSimulator, wait_s: float = 5.0) -> None:
    """Wait until the previous row's requests have left the API, so they are not counted."""
    until = time.monotonic() + wait_s
    while sim.stats()["in_flight"] > 0 and time.monotonic() < until:
        time.sleep(0.05)


def bare_urllib3_cpu_ms(sim: CdnApiSimulator, latency_ms: float, calls: int = 100) -> float:
    """CPU per call of the least any Python client does: one thread, one urllib3 GET, json."""
    sim.configure(domains=1, latency_ms=latency_ms, capacity=64)
    pool = urllib3.connection_from_url(sim.url, headers={"Authorization": "Token dev-token"})
    path = f"/v2/cdn/traffic?date={MINUTE}&domain_name=d00000.example.net&step=1m"
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(calls):
        json.loads(pool.urlopen("GET", path).data)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return round(cpu * 1000 / calls, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description="CDN API client benchmark")
    parser.add_argument("--domains", type=int, default=2000, help="of the rows without a slow tail")
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = {}
    with CdnApiSimulator(available_after_s=0) as sim:
        for name, scenario in SCENARIOS.items():
            if args.only and args.only not in name:
                continue
            started = time.monotonic()
            domains = scenario.domains or args.domains
            results[name] = run(sim, scenario, domains, args.latency_ms)
            if args.json:
                print(json.dumps({"scenario": name, **results[name]}), flush=True)
            else:
                print(f"  ran {name} in {time.monotonic() - started:.1f} s", flush=True)
        floor = bare_urllib3_cpu_ms(sim, args.latency_ms)
    if args.json:
        print(json.dumps({"bare_urllib3_cpu_ms_per_call": floor}))
    else:
        title = (
            f"{args.domains} domains x 1 minute (slow tail rows: 300 domains x 5 minutes), "
            f"~{args.latency_ms:g} ms latency"
        )
        print_table(results, title)
        print(
            f"CPU floor: one thread doing bare urllib3 GETs at {args.latency_ms:g} ms latency "
            f"costs {floor} ms per call (waking for each answer is not free)"
        )


def print_table(results: dict[str, dict], title: str) -> None:
    columns = list(next(iter(results.values())))
    width = max(map(len, results)) + 2
    print(f"\nCDN API client benchmark: {title}")
    print("scenario".ljust(width) + "".join(c.rjust(16) for c in columns[:9]))
    for name, row in results.items():
        print(name.ljust(width) + "".join(str(row[c]).rjust(16) for c in columns[:9]))
    for name, row in results.items():
        extras = ", ".join(f"{c}={row[c]}" for c in columns[9:])
        print(f"  {name}: {extras}")


if __name__ == "__main__":
    main()
