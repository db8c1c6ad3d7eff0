"""Every BigQuery table of the pipeline, declared once: used for DDL, load jobs, lineage
assets and tests. Plain data (no BigQuery library), so the DAG files can use it to parse.
"""

from __future__ import annotations

from dataclasses import dataclass

import env


@dataclass(frozen=True)
class Column:
    """A column; `bigquery.schema` turns columns into the library's SchemaFields."""

    name: str
    field_type: str  # GoogleSQL type name
    mode: str  # REQUIRED | NULLABLE
    description: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: tuple[Column, ...]
    description: str
    partition_field: str | None = None  # partitioned by day of this TIMESTAMP column
    clustering: tuple[str, ...] = ()
    retention_days: int | None = None  # partition expiration; None: partitions never expire
    require_partition_filter: bool = False  # BigQuery refuses a query that scans every partition


# A partition filter that keeps every partition, for reads meant to see every row (tests,
# the demo's report, chaos checks): BigQuery refuses those tables' reads without one.
EVERY_PARTITION = "TIMESTAMP '2000-01-01 00:00:00+00'"


def _field(name: str, kind: str, description: str, required: bool = False) -> Column:
    return Column(name, kind, "REQUIRED" if required else "NULLABLE", description)


_RAW_KEY = (
    _field("minute", "TIMESTAMP", "The minute the metrics describe (UTC)", required=True),
    _field("domain", "STRING", "CDN domain name, verbatim from the vendor", required=True),
)
_RAW_PROVENANCE = (
    _field("complete", "BOOL", "All three endpoints returned data", required=True),
    _field("run_id", "STRING", "Airflow run that wrote this row", required=True),
    _field("fetched_at", "TIMESTAMP", "When the API answered", required=True),
)

RAW = TableSpec(
    env.RAW_TABLE,
    (
        *_RAW_KEY,
        _field("metrics", "JSON", '{"traffic": {...}|null, "status": ..., "cache": ...}'),
        _field("errors", "JSON", '{"<endpoint>": "<why it has no data>"}; {} when complete'),
        *_RAW_PROVENANCE,
    ),
    "One row per (domain, minute): the CDN API's per-endpoint metrics as fetched.",
    partition_field="minute",
    clustering=("domain",),
    retention_days=env.RAW_RETENTION_DAYS,
    require_partition_filter=True,
)

# What a fetch task loads: JSON as text (BigQuery loads JSON columns from CSV, Avro or
# JSON files only), parsed into RAW's JSON columns by the publishing MERGE.
RAW_STAGING_SCHEMA = (
    *_RAW_KEY,
    _field("metrics", "STRING", "JSON text"),
    _field("errors", "STRING", "JSON text"),
    *_RAW_PROVENANCE,
)

AUDIT = TableSpec(
    env.AUDIT_TABLE,
    (
        _field("run_id", "STRING", "Airflow run id", required=True),
        _field("window_start", "TIMESTAMP", "First minute of the run's window", required=True),
        _field("window_end", "TIMESTAMP", "End of the window (exclusive)", required=True),
        _field("domains", "INT64", "Domains the API listed"),
        _field("calls", "INT64", "HTTP calls of the shard fetches, retries included"),
        _field("retries", "INT64", "Calls that were retries"),
        _field("failures", "INT64", "Endpoint-minutes that failed after retries"),
        _field("complete", "INT64", "Window domain-minutes stored complete"),
        _field("incomplete", "INT64", "Window domain-minutes stored incomplete"),
        _field("refetched", "INT64", "Earlier incomplete domain-minutes fetched again"),
        _field("filled", "INT64", "Of those, now complete"),
        _field("lost", "INT64", "Domain-minutes still incomplete past the late-data horizon"),
        _field("lost_sample", "JSON", "Up to 20 lost {domain, minute (unix seconds)}"),
        _field("fetch_seconds", "FLOAT64", "Wall time of the fetch"),
        _field("client_stats", "JSON", "The API client's run statistics"),
        _field("published_at", "TIMESTAMP", "When the window was written", required=True),
        _field("refetch_start", "TIMESTAMP", "Refetch range: [refetch_start, window_start)"),
        _field("dashboard_at", "TIMESTAMP", "Dashboard took its rows (null: not yet)"),
    ),
    "One row per raw-ingest run: what was fetched, retried, filled and lost.",
    partition_field="window_start",
    retention_days=env.AUDIT_RETENTION_DAYS,
)


# The dashboard's typed columns: (column, endpoint, metric in the API, BigQuery type).
DASHBOARD_METRICS = (
    ("bytes", "traffic", "bytes", "INT64"),
    ("bps", "traffic", "bps", "FLOAT64"),
    ("requests", "traffic", "requests", "INT64"),
    ("status_2xx", "status", "status_2xx", "INT64"),
    ("status_3xx", "status", "status_3xx", "INT64"),
    ("status_4xx", "status", "status_4xx", "INT64"),
    ("status_5xx", "status", "status_5xx", "INT64"),
    ("error_ratio", "status", "error_ratio", "FLOAT64"),
    ("cache_hit", "cache", "hit", "INT64"),
    ("cache_miss", "cache", "miss", "INT64"),
    ("hit_ratio", "cache", "hit_ratio", "FLOAT64"),
)

DASHBOARD = TableSpec(
    env.DASHBOARD_TABLE,
    (
        _field("minute_utc", "TIMESTAMP", "The minute (UTC)", required=True),
        _field(
            "minute_local", "DATETIME", f"The minute in {env.DASHBOARD_TIMEZONE}", required=True
        ),
        _field("domain", "STRING", "CDN domain name", required=True),
        *(
            _field(column, kind, f"{endpoint}.{metric} from the API")
            for column, endpoint, metric, kind in DASHBOARD_METRICS
        ),
        _field("complete", "BOOL", "Every metric's endpoint returned data", required=True),
        _field("raw_run_id", "STRING", "Ingest run that fetched the row"),
        _field("transformed_at", "TIMESTAMP", "When this row was written", required=True),
    ),
    "One typed row per (domain, minute), built from the raw table for dashboards.",
    partition_field="minute_utc",
    clustering=("domain",),
    retention_days=env.DASHBOARD_RETENTION_DAYS,
    require_partition_filter=True,
)
