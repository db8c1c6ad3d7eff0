"""Parse a DAG folder, or import one DAG file, the way a DAG processor does, with nothing to reach.

Runs a fresh interpreter where any network connection raises and the metadata database
points at a path that cannot exist, so a Variable, Connection or DB read at parse time,
or a client that connects at import, shows as an import error. Used by the DAG integrity
test and by `make deploy` before anything is uploaded; `import_dag_file` also tells which
modules a DAG file pulls in and what its import costs (the parse test and `make bench`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.local_servers import REPO

NO_NETWORK = """
import socket

def refuse(*args, **kwargs):
    raise OSError("network call while parsing DAGs")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
"""

PARSE_ALONE = (
    NO_NETWORK
    + """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
errors = {path: str(error) for path, error in bag.import_errors.items()}
print(json.dumps({"dags": sorted(bag.dag_ids), "errors": errors}))
"""
)


# The DAG processor's parsing process was forked from one that had imported this, and
# pre-imports the airflow.* modules the DAG file itself names ([dag_processor]
# parsing_pre_import_modules, on by default).
PROCESSOR_MODULE = "airflow.dag_processing.processor"

IMPORT_DAG_FILE = (
    NO_NETWORK
    + """
import importlib, importlib.util, json, sys, time
dag_file, preload = sys.argv[1], sys.argv[2:]
clocks = (time.perf_counter, time.process_time)
started = [clock() for clock in clocks]
import airflow.sdk
for module in preload:
    importlib.import_module(module)
preloaded = [clock() for clock in clocks]
spec = importlib.util.spec_from_file_location("dag_file_under_test", dag_file)
spec.loader.exec_module(importlib.util.module_from_spec(spec))
done = [clock() for clock in clocks]
print(json.dumps({
    "before_ms": 1000 * (preloaded[0] - started[0]),
    "dag_file_ms": 1000 * (done[0] - preloaded[0]),
    "dag_file_cpu_ms": 1000 * (done[1] - preloaded[1]),
    "modules": sorted(sys.modules),
}))
"""
)


PARSE_BUNDLE = PARSE_ALONE.replace(
    "bag = DagBag(dag_folder=sys.argv[1])",
    "from airflow.dag_processing.dagbag import BundleDagBag\n"
    "bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1])",
).replace(
    '"errors": errors}',
    '"errors": errors, "files": sorted(s.file.lstrip("/") for s in bag.dagbag_stats)}',
)


def parse_bundle(folder: Path, extra_env: dict | None = None) -> dict:
    """Parse `folder` as Composer's DAG processor parses its bucket's dags/ folder: a bundle
    whose root is the only thing on sys.path (no PYTHONPATH, started from that folder), its
    .airflowignore honoured. {"dags": [...], "errors": {...}, "files": [parsed files]}."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_CONN_", "BIGQUERY_", "CDN_", "COMPOSER_", "PYTHONPATH"))
    }
    env |= {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent-dir/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # This checks what imports, not how fast: a loaded CI machine is slower than Composer.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
        **(extra_env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-c", PARSE_BUNDLE, str(folder)],
        cwd=folder.parent,  # `python -c` puts its working folder on sys.path: not the repo
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        return {"dags": [], "errors": {"<parser>": done.stderr[-2000:]}, "files": []}
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_alone(dags_folder: Path = REPO / "dags", extra_env: dict | None = None) -> dict:
    """{"dags": [...], "errors": {file: error}} from a parse with no network and no DB."""
    done = _run_alone([PARSE_ALONE, str(dags_folder)], dags_folder, extra_env)
    if done.returncode != 0:
        return {"dags": [], "errors": {"<parser>": done.stderr[-2000:]}}
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_dag_file(dag_file: Path, preload: tuple[str, ...] = ()) -> dict:
    """Import one DAG file in a fresh interpreter, after `airflow.sdk` and `preload`.

    {"before_ms": wall time of airflow.sdk and `preload`; "dag_file_ms", "dag_file_cpu_ms":
    wall and CPU time of the DAG file's import; "modules": every module loaded}. The bundle
    root and the dags folder are on sys.path, as in the DAG processor.
    """
    done = _run_alone([IMPORT_DAG_FILE, str(dag_file), *preload], dag_file.parent)
    if done.returncode != 0:
        raise RuntimeError(f"importing {dag_file.name} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def airflow_imports(dag_file: Path) -> tuple[str, ...]:
    """What the DAG processor has imported before parsing this file (see PROCESSOR_MODULE)."""
    from airflow.utils.file import iter_airflow_imports

    return (PROCESSOR_MODULE, *iter_airflow_imports(str(dag_file)))


def _run_alone(
    args: list[str], dags_folder: Path, extra_env: dict | None = None
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "BIGQUERY_"))}
    env |= {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent-dir/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join((str(dags_folder.parent), str(dags_folder))),
        **(extra_env or {}),
    }
    return subprocess.run(
        [sys.executable, "-c", *args],
        cwd=dags_folder.parent,  # `-c` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
