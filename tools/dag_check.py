"""Parse a DAG folder the way a DAG processor does, with nothing to reach.

Runs a fresh interpreter where any network connection raises and the metadata database
points at a path that cannot exist, so a Variable, Connection or DB read at parse time,
or a client that connects at import, shows as an import error. Used by the DAG integrity
test and by `make deploy` before anything is uploaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tools.local_servers import REPO

PARSE_ALONE = """
import json, socket, sys

def refuse(*args, **kwargs):
    raise OSError("network call while parsing DAGs")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse

from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
errors = {path: str(error) for path, error in bag.import_errors.items()}
print(json.dumps({"dags": sorted(bag.dag_ids), "errors": errors}))
"""


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "BIGQUERY_"))}
    env |= {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent-dir/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(dags_folder.parent),
        **(extra_env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-c", PARSE_ALONE, str(dags_folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        return {"dags": [], "errors": {"<parser>": done.stderr[-2000:]}}
    return json.loads(done.stdout.strip().splitlines()[-1])
