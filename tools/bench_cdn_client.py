"""`make bench`: the CDN API client against the simulator, three kinds of API.

For 2000 domains x 1 minute (6000 calls) it prints wall time, the capacity bound
(calls / capacity x mean latency: the fastest any client can go without
overloading the API), their ratio, client CPU per call and completeness. The
simulator runs in its own process, so CPU is the client's alone.

Targets with default client settings: wall <= 1.3x the bound on the sized and
undersized APIs, <= 0.5 ms CPU per call, 100% complete under 5% transient
faults, zero lost minutes on the undersized API.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time

import urllib3

from dag_utils.cdn_api import CdnApiClient
from tools.local_servers import CdnApiSimulator

MINUTE = 1795428000  # 2026-11-23T10:00Z
TRANSIENT_5PCT = {"rate_429": 0.01, "rate_5xx": 0.015, "rate_reset": 0.01, "rate_rtcode": 0.015}
SCENARIOS = {
    "sized API (capacity 64)": {"capacity": 64},
    "undersized API (capacity 4, gateway 150 ms)": {"capacity": 4, "gateway_timeout_ms": 150},
    "5% transient faults (capacity 64)": {"capacity": 64, **TRANSIENT_5PCT},
}


def run(sim: CdnApiSimulator, domains: int, latency_ms: float, changes: dict) -> dict:
    sim.configure(domains=domains, latency_ms=latency_ms, **changes)
    sim.reset()
    client = CdnApiClient(sim.url, "dev-token")
    records = list(client.fetch_window(client.list_domains(), [MINUTE]))
    summary = client.summary()
    needed = domains * 3 + 1
    bound = needed / changes["capacity"] * latency_ms / 1000
    return {
        "wall_s": summary["wall_s"],
        "bound_s": round(bound, 2),
        "ratio": round(summary["wall_s"] / bound, 2),
        "cpu_ms_per_call": round(summary["cpu_s"] * 1000 / summary["calls"], 3),
        "complete_pct": round(100 * summary["complete"] / len(records), 2),
        "lost_minutes": summary["incomplete"],
        "calls": summary["calls"],
        "retries": summary["retries"],
        "server_max_in_flight": sim.stats()["max_in_flight"],
        "limit_min_max": f"{summary['limit_min']:g}..{summary['limit_max']:g}",
        "p50_p95_ms": f"{summary['latency_p50_ms']}/{summary['latency_p95_ms']}",
    }


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
    parser.add_argument("--domains", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = {}
    with CdnApiSimulator(available_after_s=0) as sim:
        for name, changes in SCENARIOS.items():
            if args.only and args.only not in name:
                continue
            started = time.monotonic()
            results[name] = run(sim, args.domains, args.latency_ms, changes)
            if args.json:
                print(json.dumps({"scenario": name, **results[name]}), flush=True)
            else:
                print(f"  ran {name} in {time.monotonic() - started:.1f} s", flush=True)
        floor = bare_urllib3_cpu_ms(sim, args.latency_ms)
    if args.json:
        print(json.dumps({"bare_urllib3_cpu_ms_per_call": floor}))
    else:
        print_table(results, f"{args.domains} domains x 1 minute, ~{args.latency_ms:g} ms latency")
        print(
            f"CPU floor: one thread doing bare urllib3 GETs at {args.latency_ms:g} ms latency "
            f"costs {floor} ms per call (waking for each answer is not free)"
        )


def print_table(results: dict[str, dict], title: str) -> None:
    columns = list(next(iter(results.values())))
    width = max(map(len, results)) + 2
    print(f"\nCDN API client benchmark: {title}")
    print("scenario".ljust(width) + "".join(c.rjust(17) for c in columns[:8]))
    for name, row in results.items():
        print(name.ljust(width) + "".join(str(row[c]).rjust(17) for c in columns[:8]))
    for name, row in results.items():
        extras = ", ".join(f"{c}={row[c]}" for c in columns[8:])
        print(f"  {name}: {extras}")


if __name__ == "__main__":
    main()
