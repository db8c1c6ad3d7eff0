"""Part of `make bench`: what importing each DAG file costs the DAG processor.

Each figure is the median over fresh interpreters (tools.dag_check.import_dag_file: no
network, no metadata DB, the bundle root and dags folder on sys.path), in CPU ms (what
the DAG processor spends; steady on a busy machine) and wall ms:
- beyond airflow.sdk: the DAG file's import after `import airflow.sdk`. Target <= 300 ms.
- in the DAG processor: the same, after what the real parsing process already holds: it
  is forked from the DAG processor, which has imported `airflow.dag_processing.processor`
  and pre-imports the airflow.* modules the file names (parsing_pre_import_modules).
Then, once: the providers' asset URI handlers, which Airflow loads the first time a
process builds an Asset with a URI scheme; the Google provider's `gs` handler imports
its GCS hook (google.cloud.storage, aiohttp, ...). The DAG files build their assets
without that lookup (dag_utils/assets.py): this is what each parse would add otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tools.dag_check import airflow_imports, import_dag_file
from tools.local_servers import REPO

ASSET_HANDLERS = """
import time
import airflow.sdk
from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
started = time.process_time()
ProvidersManagerTaskRuntime().asset_uri_handlers
print(1000 * (time.process_time() - started))
"""


def asset_handlers_cpu_ms() -> float:
    env = os.environ | {"AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [sys.executable, "-c", ASSET_HANDLERS], capture_output=True, text=True, env=env, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def medians(runs: list[dict]) -> str:
    cpu = statistics.median(r["dag_file_cpu_ms"] for r in runs)
    wall = statistics.median(r["dag_file_ms"] for r in runs)
    return f"{cpu:>8.0f} {wall:>8.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per figure")
    parser.add_argument("--dags", type=Path, default=REPO / "dags", help="a bundle's dags folder")
    args = parser.parse_args()
    print(f"\nDAG file imports, median of {args.runs} fresh processes each (CPU ms, wall ms)")
    print(f"{'':<22} {'beyond airflow.sdk':>17}  {'in the DAG processor':>17}")
    print(f"{'DAG file':<22} {'CPU':>8} {'wall':>8}  {'CPU':>8} {'wall':>8}")
    for dag_file in sorted(args.dags.resolve().glob("*.py")):
        alone = [import_dag_file(dag_file) for _ in range(args.runs)]
        forked = [import_dag_file(dag_file, airflow_imports(dag_file)) for _ in range(args.runs)]
        print(f"{dag_file.name:<22} {medians(alone)}  {medians(forked)}", flush=True)
    handlers = statistics.median(asset_handlers_cpu_ms() for _ in range(args.runs))
    print(f"providers' asset URI handlers, left out of every parse: {handlers:.0f} CPU ms")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
