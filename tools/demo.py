"""`make demo`: what the bundle can do so far, on local stand-ins only.

Starts the CDN API simulator (with its production faults switched on and a gap in
the data), fetches the last complete 5-minute window through the command line an
operator would use, and prints what happened. Stops the simulator after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tools.local_servers import CdnApiSimulator

DEMO_FAULTS = {
    "domains": 40,
    "capacity": 16,
    "latency_ms": 40,
    "rate_429": 0.01,
    "rate_5xx": 0.02,
    "rate_reset": 0.01,
    "rate_rtcode": 0.01,
    "rate_reorder": 0.1,
    "rate_null": 0.01,
    "rate_empty": 0.02,  # the gap: these minutes never arrive
    "hostile": True,
}


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%MZ")


def main() -> None:
    end = int(time.time()) // 300 * 300 - 300  # the last window the API has complete
    start = end - 300
    with (
        CdnApiSimulator(available_after_s=60, **DEMO_FAULTS) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        out = Path(tmp) / "raw.jsonl"
        print(f"CDN API simulator on {sim.url} with faults: {json.dumps(DEMO_FAULTS)}")
        print(f"fetching {iso(start)} .. {iso(end)} with python -m dag_utils.cdn_api\n")
        done = subprocess.run(
            [sys.executable, "-m", "dag_utils.cdn_api", "--base-url", sim.url,
             "--start", iso(start), "--end", iso(end), "--out", str(out)],
            env={**os.environ, "CDN_API_TOKEN": "dev-token"},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if not out.exists():
            sys.exit(f"the client failed (exit {done.returncode}):\n{done.stderr}")
        records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        report(records, json.loads(done.stdout.splitlines()[-1]), sim.stats(), done.returncode)


def report(records: list[dict], stats: dict, server: dict, exit_code: int) -> None:
    incomplete = [r for r in records if r["errors"]]
    reasons = Counter(reason.split(":")[0] for r in incomplete for reason in r["errors"].values())
    rows = {
        "records written": f"{len(records)} (one per domain-minute), exit code {exit_code}",
        "complete": len(records) - len(incomplete),
        "incomplete": f"{len(incomplete)} {dict(reasons)}",
        "API calls": f"{stats['calls']}, retries by cause {stats['retries_by_cause']}",
        "latency p50/p95": f"{stats['latency_p50_ms']} / {stats['latency_p95_ms']} ms",
        "max in flight": f"{stats['max_in_flight']} (the server saw {server['max_in_flight']})",
        "adaptive limit": f"{stats['limit_min']} .. {stats['limit_max']}",
        "wall time": f"{stats['wall_s']} s",
    }
    for label, value in rows.items():
        print(f"{label:<20} {value}")
    hostile = next(r for r in records if "'" in r["domain"] and not r["errors"])
    print("\na hostile domain name, stored verbatim:")
    print(json.dumps(hostile, ensure_ascii=False, indent=1))
    if incomplete:
        print("\nan incomplete record says why:")
        print(json.dumps(incomplete[0], ensure_ascii=False))


if __name__ == "__main__":
    main()
