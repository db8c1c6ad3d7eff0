"""What the pipeline's BigQuery jobs cost, per DAG, task and window, from their labels.

The query reads INFORMATION_SCHEMA.JOBS of the region (it needs bigquery.jobs.listAll,
e.g. roles/bigquery.resourceViewer on the project): run it in the console or with
`bq query --use_legacy_sql=false --parameter=days:INT64:7 < file`. Top-level jobs only:
a script's parent job reports the totals of its statements' child jobs. `JOBS_SCHEMA`
holds the columns it reads, as documented, for the GoogleSQL check
(tests/test_bigquery_jobs.py).
"""

from __future__ import annotations

from google.cloud.bigquery import SchemaField

import env

JOBS_VIEW = f"region-{env.BQ_LOCATION}.INFORMATION_SCHEMA.JOBS"

COST_BY_WINDOW = """
WITH labelled AS (
  SELECT
    (SELECT value FROM UNNEST(labels) WHERE key = 'dag') AS dag,
    (SELECT value FROM UNNEST(labels) WHERE key = 'task') AS task,
    (SELECT value FROM UNNEST(labels) WHERE key = 'window_start') AS window_start,
    (SELECT value FROM UNNEST(labels) WHERE key = 'try') AS try_number,
    error_result.reason AS error_reason,
    total_bytes_billed, total_slot_ms
  FROM `<jobs>`
  WHERE creation_time >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL @days DAY)
    AND parent_job_id IS NULL
)
SELECT dag, task, window_start,
       COUNT(*) AS jobs,
       COUNT(DISTINCT try_number) AS tries,
       COUNTIF(error_reason = 'stopped') AS cancelled,
       ROUND(SUM(total_bytes_billed) / POW(1024, 4), 6) AS tib_billed,
       ROUND(SUM(total_slot_ms) / 3600000, 3) AS slot_hours
FROM labelled
WHERE dag IS NOT NULL  -- the pipeline's jobs: nothing else here carries a 'dag' label
GROUP BY dag, task, window_start
ORDER BY window_start DESC, dag, task
""".replace("<jobs>", JOBS_VIEW)

JOBS_SCHEMA = (
    SchemaField("creation_time", "TIMESTAMP"),
    SchemaField("job_id", "STRING"),
    SchemaField("parent_job_id", "STRING"),
    SchemaField("state", "STRING"),
    SchemaField("total_bytes_billed", "INT64"),
    SchemaField("total_slot_ms", "INT64"),
    SchemaField(
        "labels",
        "RECORD",
        "REPEATED",
        fields=(SchemaField("key", "STRING"), SchemaField("value", "STRING")),
    ),
    SchemaField(
        "error_result",
        "RECORD",
        fields=(
            SchemaField("reason", "STRING"),
            SchemaField("location", "STRING"),
            SchemaField("debug_info", "STRING"),
            SchemaField("message", "STRING"),
        ),
    ),
)
