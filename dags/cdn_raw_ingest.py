"""DAG 1 of 3 — CDN statistics API → BigQuery raw table, one window per run.

Each run covers its data interval shifted back by the availability lag (`env.py`), so
consecutive runs tile time and catchup backfills history. `fetch_to_staging` takes a
slot of the `cdn_api` pool, which caps the calls in flight on the API across all runs;
`publish_window` writes the window and its audit row in one BigQuery transaction,
holding the single slot of the `cdn_bq_writes` pool so no two writers race.
"""

from __future__ import annotations

from airflow.sdk import BaseHook, CronDataIntervalTimetable, dag, task

import env
from dag_utils import raw_ingest


@dag(
    dag_id=env.INGEST_DAG_ID,
    schedule=CronDataIntervalTimetable(env.SCHEDULE, timezone="UTC"),
    start_date=env.START_DATE,
    catchup=True,
    max_active_runs=env.MAX_ACTIVE_RUNS,
    default_args=env.DEFAULT_ARGS,
    tags=["cdn", "ingest"],
    doc_md=__doc__,
)
def cdn_raw_ingest() -> None:
    @task(pool=env.CDN_API_POOL)
    def fetch_to_staging(data_interval_start=None, data_interval_end=None, run_id=None) -> dict:
        window = raw_ingest.window_for(data_interval_start, data_interval_end, env.AVAILABILITY_LAG)
        api = BaseHook.get_connection(env.CDN_API_CONN_ID)
        url = raw_ingest.base_url(api.host, api.schema, api.port)
        return raw_ingest.fetch_to_staging(window, run_id, url, api.password)

    @task(pool=env.BQ_WRITE_POOL)
    def publish_window(fetched: dict) -> dict:
        return raw_ingest.publish(fetched)

    publish_window(fetch_to_staging())


cdn_raw_ingest()
