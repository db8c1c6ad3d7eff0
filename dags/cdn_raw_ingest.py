"""DAG 1 of 3 — CDN statistics API → BigQuery raw table, one window per run.

Each run covers its data interval shifted back by the availability lag (`env.py`), so
consecutive runs tile time and catchup backfills history. `plan_shards` lists the
domains and cuts them into shards; `fetch_shard` is mapped over them, each taking a slot
of the `cdn_api` pool, whose slots times the per-task ceiling cap the calls in flight on
the API across all runs. `publish_window` writes every shard and the audit row in one
BigQuery transaction, holding the single slot of the `cdn_bq_writes` pool. It updates
the raw and audit table assets (`dag_utils/assets.py`), for lineage.
`watch_pools` fails the run (fail_fast) with the pool's name if a pool is missing, which
Airflow otherwise only logs while the run waits for ever.

`dag_utils.raw_ingest` (BigQuery, pyarrow) is imported inside the tasks, not at the top:
the DAG processor re-imports this file often and needs none of it.
"""

from __future__ import annotations

from airflow.sdk import BaseHook, dag, get_current_context, task

import env
from dag_utils import assets, pools, tables
from dag_utils.bigquery_task import bigquery_task, jobs_of
from dag_utils.schedule import windowed_dag_args, windows
from dag_utils.tokens import rejected_token_fails_now
from dag_utils.windows import window_for


def _api() -> tuple[str, str]:
    """The API's base URL and token, from the Airflow Connection, at run time."""
    from dag_utils.raw_ingest import base_url

    conn = BaseHook.get_connection(env.CDN_API_CONN_ID)
    return base_url(conn.host, conn.schema, conn.port), conn.password


@dag(
    dag_id=env.INGEST_DAG_ID,
    schedule=windows(),
    **windowed_dag_args(),
    fail_fast=True,  # a failed task skips the rest: publish cannot run without every shard
    tags=["cdn", "ingest"],
    doc_md=__doc__,
)
def cdn_raw_ingest() -> None:
    @task(pool=env.CDN_API_POOL)
    def plan_shards() -> list[list[str]]:
        from dag_utils import raw_ingest

        with rejected_token_fails_now(env.CDN_API_CONN_ID):
            return raw_ingest.plan_shards(*_api())

    @bigquery_task(pool=env.CDN_API_POOL)
    def fetch_shard(
        domains: list[str], data_interval_start=None, data_interval_end=None, run_id=None, ti=None
    ) -> dict:
        from dag_utils import raw_ingest

        window = window_for(data_interval_start, data_interval_end)
        with rejected_token_fails_now(env.CDN_API_CONN_ID), jobs_of(ti, window.start):
            return raw_ingest.fetch_shard(window, run_id, ti.map_index, domains, *_api())

    @bigquery_task(pool=env.BQ_WRITE_POOL, outlets=[assets.RAW, assets.AUDIT])
    def publish_window(
        shards: list[dict],
        data_interval_start=None,
        data_interval_end=None,
        run_id=None,
        outlet_events=None,
        ti=None,
    ) -> dict:
        from dag_utils import raw_ingest

        window = window_for(data_interval_start, data_interval_end)
        with jobs_of(ti, window.start):
            summary = raw_ingest.publish(window, run_id, list(shards))
        assets.record_writes(outlet_events, (tables.RAW, tables.AUDIT), window)
        return summary

    @task.sensor(
        poke_interval=env.POOL_POKE.total_seconds(),
        mode="reschedule",
        timeout=24 * 3600,
        retries=env.SENSOR_RETRIES,
    )
    def watch_pools(ti=None, dag=None, dag_run=None) -> bool:
        since = ti.get_first_reschedule_date(get_current_context()) or ti.start_date
        return pools.watch(ti, dag, dag_run, since, env.POOL_WAIT, env.SHARED_POOLS)

    publish_window(fetch_shard.expand(domains=plan_shards()))
    watch_pools()


cdn_raw_ingest()
