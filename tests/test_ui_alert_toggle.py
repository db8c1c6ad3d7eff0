"""The Airflow UI in a browser, on one real stack (starting one costs minutes): switching
alerting off and on with the UI's own pause toggle, then every main view a user opens."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

import env
from dag_utils import assets, tables
from tests.airflow_runs import alert_run_of, latest, rerun_of
from tools.airflow_stack import MIN_POKE_S, PASSWORD, USER, AirflowStack, catchup_start
from tools.airflow_ui import (
    dag_graph,
    error_messages,
    graph_nodes,
    logged_in,
    open_view,
    server_errors,
    toggle_pause,
)

pytestmark = pytest.mark.usefixtures("cdn_connection", "slack")
DAGS = {  # each DAG and a task its grid lists
    env.INGEST_DAG_ID: "publish_window",
    env.TRANSFORM_DAG_ID: "transform_window",
    env.ALERT_DAG_ID: "check_window",
}
TABLES = {spec.name: assets.table_id(spec) for spec in (tables.RAW, tables.DASHBOARD, tables.AUDIT)}


def is_paused(airflow: AirflowStack, dag_id: str) -> bool:
    return airflow.api("GET", f"dags/{dag_id}")["is_paused"]


def trigger_alert_state(airflow: AirflowStack, run: dict) -> str:
    tis = airflow.task_instances(env.TRANSFORM_DAG_ID, run["dag_run_id"])
    return next(ti["state"] for ti in tis if ti["task_id"] == "trigger_alert")


@pytest.mark.timeout(900)  # two transform runs and an alert run, then about 15 page views
def test_the_ui_toggle_switches_alerting_off_and_on_and_every_main_view_loads(
    sim, bq, tmp_path, metadata_db
) -> None:
    settings = {  # catchup makes one transform run: the last complete window
        "CDN_START_DATE": catchup_start(5).isoformat(),
        "CDN_INGEST_POKE_S": str(MIN_POKE_S),
        "CDN_INGEST_WAIT_S": "5",  # the ingest DAG stays paused: transform after one poke
    }
    with AirflowStack(tmp_path / "airflow", settings, database=metadata_db) as airflow:
        airflow.provision()
        for dag_id in (env.TRANSFORM_DAG_ID, env.ALERT_DAG_ID):
            airflow.wait_for_dag(dag_id)
        airflow.set_paused(env.ALERT_DAG_ID, False)  # alerting on, as in production

        with logged_in(airflow.url, USER, PASSWORD) as page:
            toggle_pause(page, airflow.url, env.ALERT_DAG_ID, paused=True)
            assert is_paused(airflow, env.ALERT_DAG_ID)

            airflow.set_paused(env.TRANSFORM_DAG_ID, False)
            runs = airflow.wait_for_runs(env.TRANSFORM_DAG_ID, 1)
            assert {r["state"] for r in runs} == {"success"}
            assert [trigger_alert_state(airflow, r) for r in runs] == ["skipped"] * len(runs)
            assert airflow.runs(env.ALERT_DAG_ID) == []

            toggle_pause(page, airflow.url, env.ALERT_DAG_ID, paused=False)
            page.screenshot(path=str(tmp_path / "unpaused.png"))
            assert not is_paused(airflow, env.ALERT_DAG_ID), tmp_path / "unpaused.png"

        manual = airflow.api(
            "POST", f"dags/{env.TRANSFORM_DAG_ID}/dagRuns", logical_date=rerun_of(latest(runs))
        )
        runs = airflow.wait_for_runs(env.TRANSFORM_DAG_ID, len(runs) + 1)
        (rerun,) = [r for r in runs if r["dag_run_id"] == manual["dag_run_id"]]
        assert trigger_alert_state(airflow, rerun) == "success"
        assert alert_run_of(airflow, rerun)["state"] == "success"
        assert airflow.tasks_ended_unreported() == []  # no sensor poke lost to the race

        with logged_in(airflow.url, USER, PASSWORD) as page:
            every_main_view_loads(page, airflow, rerun, tmp_path)


def every_main_view_loads(page: Page, airflow: AirflowStack, run: dict, shots) -> None:
    """The views a new user opens, each with no error shown and no call answered 5xx."""
    failed = server_errors(page)

    def loaded(view: str) -> None:
        page.screenshot(path=str(shots / f"{view}.png"))
        shown = error_messages(page)  # a failed call can leave no message: `failed` sees it
        assert (shown, failed) == ([], []), f"{view}: {shown} {failed} ({shots}/{view}.png)"

    open_view(page, f"{airflow.url}/dags", env.ALERT_DAG_ID)
    loaded("dag-list")
    assert all(page.get_by_text(dag_id, exact=True).count() for dag_id in DAGS)
    for dag_id, task_id in DAGS.items():
        open_view(page, f"{airflow.url}/dags/{dag_id}", dag_id)
        page.get_by_role("button", name="Show Grid").click()
        page.get_by_test_id(f"task-{task_id}").wait_for()
        loaded(f"{dag_id}-grid")
        nodes = dag_graph(page, airflow.url, dag_id)
        loaded(f"{dag_id}-graph")
        assert any(node.startswith(task_id) for node in nodes), nodes

    # The DAG dependencies view: the DAGs and the tables they write (Airflow's own query).
    nodes = dag_graph(page, airflow.url, env.TRANSFORM_DAG_ID, "All Dag Dependencies")
    loaded("dependencies")
    assert {env.TRANSFORM_DAG_ID, TABLES[env.DASHBOARD_TABLE]} <= set(nodes), nodes

    open_view(page, f"{airflow.url}/assets", TABLES[env.RAW_TABLE])
    loaded("assets")
    assert all(page.get_by_text(table, exact=True).count() for table in TABLES.values())
    page.get_by_text(TABLES[env.RAW_TABLE], exact=True).click()
    page.get_by_role("button", name="Task Dependencies").wait_for()
    nodes = graph_nodes(page)  # the Scheduling graph
    loaded("raw-asset-scheduling")
    assert {env.INGEST_DAG_ID, TABLES[env.RAW_TABLE]} <= set(nodes), nodes
    page.get_by_role("button", name="Task Dependencies").click()
    lineage = set(graph_nodes(page))  # each task node: "<task_id> <dag_id>"
    loaded("raw-asset-lineage")
    assert {
        f"publish_window {env.INGEST_DAG_ID}",
        TABLES[env.RAW_TABLE],
        f"transform_window {env.TRANSFORM_DAG_ID}",
        TABLES[env.DASHBOARD_TABLE],
        f"check_window {env.ALERT_DAG_ID}",
    } <= lineage, lineage

    task_page = f"{airflow.url}/dags/{env.TRANSFORM_DAG_ID}/runs/{run['dag_run_id']}"
    open_view(page, f"{task_page}/tasks/transform_window", "dashboard window written")
    loaded("task-log")
    open_view(page, f"{airflow.url}/dags/{env.INGEST_DAG_ID}/backfills", "No Backfills found")
    loaded("backfills")
