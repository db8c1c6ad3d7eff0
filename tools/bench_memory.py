"""Part of `make bench`: a worker's peak memory against the size of the window it fetches.

Each size runs in a fresh Python process that does what one `fetch_shard` task does:
the client streams every (domain, minute) of a 5-minute window from the simulator into
the Parquet staging file. It prints the process's peak RSS once the client is ready and
after the window, for windows 50 times apart in size. Target: the peak does not grow
with the window, beyond the fixed cost of the in-flight calls and one staging batch.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from dag_utils.cdn_api import CdnApiClient, ClientSettings
from dag_utils.raw_ingest import write_staging_file
from tools.local_servers import CdnApiSimulator

MINUTES = range(1795428000, 1795428300, 60)  # 2026-11-23T10:00Z, 5 minutes
SIZES = (200, 2000, 10000)  # domains
IN_FLIGHT = 32


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(url: str) -> None:
    """One window in this process; prints its figures as JSON."""
    client = CdnApiClient(url, "dev-token", ClientSettings(max_concurrency=IN_FLIGHT))
    domains = client.list_domains()
    ready = peak_rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_staging_file(
            client.fetch_window(domains, MINUTES), Path(tmp) / "staging.parquet", "bench"
        )
    summary = client.summary()
    print(json.dumps({"rows": rows, "calls": summary["calls"], "ready_mb": ready,
                      "peak_mb": peak_rss_mb(), "wall_s": summary["wall_s"]}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="worker peak memory against window size")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    results = []
    with CdnApiSimulator(capacity=128, latency_ms=2, available_after_s=0) as sim:
        for domains in SIZES:
            sim.configure(domains=domains)
            out = subprocess.run(
                [sys.executable, "-m", "tools.bench_memory", "--child", sim.url],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            results.append({"domains": domains, **json.loads(out.stdout.splitlines()[-1])})
            print(f"  {domains} domains done", flush=True)
    base = results[0]["peak_mb"]
    print(f"\nWorker memory: one 5-minute window streamed to staging, {IN_FLIGHT} calls in flight")
    print(f"{'domains':>8} {'domain-minutes':>15} {'calls':>8} {'RSS ready MB':>13} "
          f"{'peak RSS MB':>12} {'vs smallest':>12} {'wall s':>7}")  # fmt: skip
    for r in results:
        grown = r["peak_mb"] - base
        print(f"{r['domains']:>8} {r['rows']:>15} {r['calls']:>8} {r['ready_mb']:>13.1f} "
              f"{r['peak_mb']:>12.1f} {grown:>+12.1f} {r['wall_s']:>7.1f}")  # fmt: skip
    (_, middle, last) = results
    grown = last["peak_mb"] - middle["peak_mb"]
    per_row = grown * 2**20 / (last["rows"] - middle["rows"])
    print(f"from {middle['rows']} to {last['rows']} domain-minutes the peak grew {grown:+.1f} MB "
          f"({per_row:.0f} bytes per domain-minute)")  # fmt: skip


if __name__ == "__main__":
    main()
