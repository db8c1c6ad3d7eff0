"""The DAG folder as Composer's DAG processor sees it: parses alone, and is set up right."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from airflow.sdk import CronDataIntervalTimetable
from airflow.sdk.definitions.timetables.simple import NullTimetable

import env
from dag_utils.operators import TriggerAlertForWindow
from tests.airflow_runs import dag_bag
from tools.local_servers import REPO

DAG_IDS = {env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID}

# Parses the DAG folder in a fresh interpreter where any network connection raises, with
# the metadata database pointing at a path that cannot exist: a Variable, Connection or
# DB read at parse time, or a client that connects at import, becomes an import error.
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


def test_the_dag_folder_parses_with_no_servers_network_or_metadata_db() -> None:
    env_vars = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "BIGQUERY_"))
    }
    env_vars["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = "sqlite:////nonexistent-dir/airflow.db"
    done = subprocess.run(
        [sys.executable, "-c", PARSE_ALONE, str(REPO / "dags")],
        capture_output=True,
        text=True,
        env=env_vars,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed == {"dags": sorted(DAG_IDS), "errors": {}}


def test_every_dag_has_owner_tags_retries_and_the_right_schedule() -> None:
    bag = dag_bag()
    assert set(bag.dag_ids) == DAG_IDS
    for dag in bag.dags.values():
        assert dag.tags and dag.doc_md
        for task in dag.tasks:
            assert task.owner == env.DEFAULT_ARGS["owner"]
            assert task.retries >= 1 and task.execution_timeout is not None
    for dag_id in (env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID):  # the same windows, catchup on
        dag = bag.dags[dag_id]
        assert isinstance(dag.timetable, CronDataIntervalTimetable)
        assert dag.timetable.expression == env.SCHEDULE
        assert dag.catchup and dag.max_active_runs == env.MAX_ACTIVE_RUNS
    alert = bag.dags[env.ALERT_DAG_ID]
    assert isinstance(alert.timetable, NullTimetable) and not alert.catchup
    assert alert.max_active_runs == 1


def test_api_calls_and_table_writes_are_bounded_by_pools() -> None:
    bag = dag_bag()
    ingest, transform = bag.dags[env.INGEST_DAG_ID], bag.dags[env.TRANSFORM_DAG_ID]
    assert ingest.get_task("fetch_to_staging").pool == env.CDN_API_POOL
    assert ingest.get_task("publish_window").pool == env.BQ_WRITE_POOL
    assert transform.get_task("transform_window").pool == env.BQ_WRITE_POOL


def test_the_transform_runs_after_its_ingest_whatever_became_of_it() -> None:
    transform = dag_bag().dags[env.TRANSFORM_DAG_ID]
    sensor = transform.get_task("wait_for_ingest")
    assert sensor.external_dag_id == env.INGEST_DAG_ID and sensor.soft_fail
    assert set(sensor.allowed_states) == {"success", "failed"}
    assert transform.get_task("transform_window").trigger_rule == "all_done"
    assert isinstance(transform.get_task("trigger_alert"), TriggerAlertForWindow)
