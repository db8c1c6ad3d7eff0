"""The DAG folder as Composer's DAG processor sees it: parses alone, and is set up right."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import Asset, CronDataIntervalTimetable
from airflow.sdk.definitions.timetables.simple import NullTimetable

import env
from dag_utils import assets, tables
from dag_utils.handoff import INGEST_ENDED
from tests.airflow_runs import dag_bag
from tools.dag_check import import_dag_file, parse_alone
from tools.local_servers import REPO

pytestmark = pytest.mark.matrix
DAG_IDS = {env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID}
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
# What the tasks need and parsing does not: the DAG processor re-imports every file often.
TASK_ONLY_LIBRARIES = (
    "google.cloud.bigquery",
    "pyarrow",
    "pandas",
    "slack_sdk",
    # Every provider's asset URI handler, loaded by the first Asset with a URI (~1.1 s).
    "airflow.providers.google.assets",
    # The ORM-backed trigger of the standard provider's TriggerDagRunOperator (~0.5 s).
    "airflow.api.common.trigger_dag",
)


def test_the_dag_folder_parses_with_no_servers_network_or_metadata_db() -> None:
    assert parse_alone() == {"dags": sorted(DAG_IDS), "errors": {}}


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_a_dag_file_loads_no_library_only_its_tasks_need(dag_file: Path) -> None:
    modules = import_dag_file(dag_file)["modules"]
    loaded = {lib for lib in TASK_ONLY_LIBRARIES for m in modules if f"{m}.".startswith(f"{lib}.")}
    assert loaded == set(), f"{dag_file.name} imports {sorted(loaded)} at parse time"


def test_each_environment_names_its_dags_stably() -> None:
    parsed = parse_alone(extra_env={"CDN_ENV": "dev"})
    assert parsed == {"dags": sorted("dev_" + d for d in DAG_IDS), "errors": {}}


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
    assert ingest.get_task("plan_shards").pool == env.CDN_API_POOL
    assert ingest.get_task("fetch_shard").pool == env.CDN_API_POOL
    assert ingest.get_task("publish_window").pool == env.BQ_WRITE_POOL
    assert transform.get_task("transform_window").pool == env.BQ_WRITE_POOL
    # A missing pool fails the run: the watch itself needs none, and fails it fast.
    assert ingest.get_task("watch_pools").pool == "default_pool" and ingest.fail_fast
    assert ingest.get_task("watch_pools").retries == env.SENSOR_RETRIES  # absorb #71172
    assert env.POOLS == {env.CDN_API_POOL: env.CDN_API_POOL_SLOTS, env.BQ_WRITE_POOL: 1}


def test_the_transform_runs_after_its_ingest_whatever_became_of_it() -> None:
    transform = dag_bag().dags[env.TRANSFORM_DAG_ID]
    sensor = transform.get_task("wait_for_ingest")
    assert sensor.mode == "reschedule" and sensor.soft_fail
    assert sensor.timeout == env.INGEST_WAIT.total_seconds()
    assert sensor.retries == env.SENSOR_RETRIES
    assert set(INGEST_ENDED) == {"success", "failed"}
    assert transform.get_task("transform_window").trigger_rule == "all_done"
    assert transform.get_task("trigger_alert").trigger_rule == "all_done"


def test_lineage_runs_from_the_raw_table_through_the_dashboard_to_the_alert_check() -> None:
    bag = dag_bag()
    ids = (env.INGEST_DAG_ID, env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID)
    ingest, transform, alert = (bag.dags[dag_id] for dag_id in ids)
    table = f"bigquery://{env.GCP_PROJECT}/{env.BQ_DATASET}/{{}}".format
    raw, audit, dashboard = table(env.RAW_TABLE), table(env.AUDIT_TABLE), table(env.DASHBOARD_TABLE)

    def names(declared: list) -> set[str]:
        assert all(isinstance(asset, Asset) for asset in declared)  # listed on the Assets page
        return {asset.uri for asset in declared}

    publish = ingest.get_task("publish_window")
    assert names(publish.outlets) == {raw, audit}
    assert names(transform.get_task("transform_window").inlets) == {raw}
    assert names(transform.get_task("transform_window").outlets) == {dashboard}
    assert names(alert.get_task("check_window").inlets) == {raw, dashboard}
    tasks = [task for dag in (ingest, transform, alert) for task in dag.tasks]
    assert sum(len(task.outlets) for task in tasks) == 3  # no other task claims a table


@pytest.mark.parametrize("spec", [tables.RAW, tables.AUDIT, tables.DASHBOARD], ids=lambda s: s.name)
def test_a_table_asset_is_what_airflow_and_the_google_provider_make_of_its_uri(
    spec: tables.TableSpec,
) -> None:
    asset = assets.table_asset(spec)
    assert asset.uri == f"bigquery://{env.GCP_PROJECT}/{env.BQ_DATASET}/{spec.name}"
    assert asset.name == f"{env.GCP_PROJECT}.{env.BQ_DATASET}.{spec.name}"
    sanitized = Asset(name=asset.name, uri=asset.uri, group=asset.group, extra=asset.extra)
    assert sanitized == asset  # the sanitizer, with the provider's handler, keeps it as it is
    assert asset.normalized_uri == asset.uri
