"""The one BigQuery client factory, and the few operations the pipeline runs with it."""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

import env
from dag_utils import bigquery_jobs
from dag_utils.tables import Column, TableSpec

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]+$")


def client() -> bigquery.Client:
    """BigQuery through the google provider's hook in Composer; the emulator locally.

    google-cloud-bigquery sends every request to BIGQUERY_EMULATOR_HOST when it is set;
    the emulator needs no credentials.
    """
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=env.GCP_PROJECT, credentials=AnonymousCredentials(), location=env.BQ_LOCATION
        )
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    hook = BigQueryHook(gcp_conn_id=env.GCP_CONN_ID, location=env.BQ_LOCATION)
    return hook.get_client(project_id=env.GCP_PROJECT, location=env.BQ_LOCATION)


def table_id(name: str, dataset: str | None = None) -> str:
    """`project.dataset.table`, from configuration only; refuses anything else."""
    parts = (env.GCP_PROJECT, dataset or env.BQ_DATASET, name)
    if not all(_IDENTIFIER.match(p) for p in parts):
        raise ValueError(f"not a plain BigQuery identifier: {'.'.join(parts)!r}")
    return ".".join(parts)


def table_ids() -> dict[str, str]:
    """The pipeline's table ids by role: what fills {raw}, {audit}, {dashboard} in sql.py."""
    return {
        "raw": table_id(env.RAW_TABLE),
        "audit": table_id(env.AUDIT_TABLE),
        "dashboard": table_id(env.DASHBOARD_TABLE),
    }


def ensure_tables(bq: bigquery.Client, *specs: TableSpec) -> None:
    for spec in specs:
        ensure_table(bq, spec)


def timezone_name(name: str) -> str:
    """An IANA time zone name from configuration, checked before it goes into SQL text."""
    if name not in zoneinfo.available_timezones():
        raise ValueError(f"not an IANA time zone: {name!r}")
    return name


def ensure_table(bq: bigquery.Client, spec: TableSpec) -> None:
    """Create the table (and its dataset) when missing; add new columns, never change one;
    give it the spec's retention and partition filter requirement (`reconcile_lifetime`).

    Each is looked up first and created only when missing: the service account needs no
    permission to create datasets (create_dataset(exists_ok=True) asks for it every time,
    and a 403 is not the 409 that exists_ok swallows).
    """
    try:
        bq.get_dataset(f"{env.GCP_PROJECT}.{env.BQ_DATASET}")
    except NotFound:
        dataset = bigquery.Dataset(f"{env.GCP_PROJECT}.{env.BQ_DATASET}")
        dataset.location = env.BQ_LOCATION
        bq.create_dataset(dataset, exists_ok=True)
    try:
        table = bq.get_table(table_id(spec.name))
    except NotFound:
        table = bigquery.Table(table_id(spec.name), schema=schema(spec.schema))
        table.description = spec.description
        if spec.partition_field:
            table.time_partitioning = _partitioning(spec)
            table.require_partition_filter = spec.require_partition_filter
        table.clustering_fields = list(spec.clustering) or None
        table = bq.create_table(table, exists_ok=True)
    _add_columns(bq, table, spec)
    reconcile_lifetime(bq, table, spec)


def _add_columns(bq: bigquery.Client, table: bigquery.Table, spec: TableSpec) -> None:
    existing = {f.name: _standard_type(f.field_type) for f in table.schema}
    for field in spec.schema:
        if existing.get(field.name, _standard_type(field.field_type)) != _standard_type(
            field.field_type
        ):
            raise ValueError(
                f"{spec.name}.{field.name} is {existing[field.name]} in BigQuery but "
                f"{field.field_type} here: only additive schema changes are allowed"
            )
    added = [
        bigquery.SchemaField(f.name, f.field_type, "NULLABLE", description=f.description)
        for f in spec.schema
        if f.name not in existing
    ]
    if added:
        table.schema = [*table.schema, *added]
        bq.update_table(table, ["schema"])


def reconcile_lifetime(bq: bigquery.Client, table: bigquery.Table, spec: TableSpec) -> list[str]:
    """Put the table's lifetime settings back to the spec's; the fields it changed.

    Partition expiration and the partition filter requirement as configured, and no table
    expiration: a dataset's defaults (defaultPartitionExpirationMs, defaultTableExpirationMs)
    are applied to every table created in it, and would drop partitions, or the whole table,
    with no error anywhere. A None expiration is sent as an explicit null, which clears it
    (leaving it out of the patch would keep the dataset's default).
    """
    if not spec.partition_field:
        return []
    changed = []
    partitioning = table.time_partitioning or _partitioning(spec)
    if table.time_partitioning is None or partitioning.expiration_ms != _ms(spec):
        partitioning.expiration_ms = _ms(spec)  # None is kept, and sent, as null
        table.time_partitioning = partitioning
        changed.append("time_partitioning")
    if bool(table.require_partition_filter) != spec.require_partition_filter:
        table.require_partition_filter = spec.require_partition_filter
        changed.append("require_partition_filter")
    if table.expires is not None:
        table.expires = None
        changed.append("expires")
    if changed:
        bq.update_table(table, changed)
    return changed


def _ms(spec: TableSpec) -> int | None:
    return None if spec.retention_days is None else spec.retention_days * 86_400_000


def _partitioning(spec: TableSpec) -> bigquery.TimePartitioning:
    partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field=spec.partition_field
    )
    partitioning.expiration_ms = _ms(spec)  # None is kept, and sent, as null
    return partitioning


def schema(columns: Sequence[Column]) -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(c.name, c.field_type, c.mode, description=c.description)
        for c in columns
    ]


def _standard_type(kind: str) -> str:
    """The API reports legacy type names (BOOLEAN, INTEGER, FLOAT)."""
    return {"BOOLEAN": "BOOL", "INTEGER": "INT64", "FLOAT": "FLOAT64", "RECORD": "STRUCT"}.get(
        kind.upper(), kind.upper()
    )


def load_parquet(bq: bigquery.Client, path: Path, table: str, columns: Sequence[Column]) -> int:
    """Replace `table` with the file's rows by a load job (never streaming); rows loaded."""
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        schema=schema(columns),
        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
    )
    config.labels, config.job_timeout_ms = bigquery_jobs.settings()
    with path.open("rb") as source:
        job = bq.load_table_from_file(
            source, table, job_config=config, job_id_prefix=bigquery_jobs.id_prefix()
        )
    with bigquery_jobs.running(job):
        job.result(timeout=bigquery_jobs.RESULT_TIMEOUT_S)
    return int(job.output_rows or 0)


def query(bq: bigquery.Client, sql: str, params: Mapping[str, Any]) -> list[bigquery.Row]:
    """Run a statement or script with named parameters and wait for it; all its rows."""
    return list(query_rows(bq, sql, params))


def query_rows(
    bq: bigquery.Client, sql: str, params: Mapping[str, Any], page_size: int | None = None
) -> Iterator[bigquery.Row]:
    """Run a query and wait for it; its rows, fetched a page at a time as they are read."""
    labels, timeout_ms = bigquery_jobs.settings()
    config = bigquery.QueryJobConfig(
        query_parameters=[_parameter(k, v) for k, v in params.items()],
        labels=labels,
        job_timeout_ms=timeout_ms,
    )
    job = bq.query(
        sql,
        job_config=config,
        job_id_prefix=bigquery_jobs.id_prefix(),
        location=env.BQ_LOCATION,
    )
    with bigquery_jobs.running(job):
        rows = job.result(page_size=page_size, timeout=bigquery_jobs.RESULT_TIMEOUT_S)
    return iter(rows)


def _parameter(
    name: str, value: Any
) -> bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return bigquery.ArrayQueryParameter(name, "STRING", value)
    kinds = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING", datetime: "TIMESTAMP"}
    kind = next((k for t, k in kinds.items() if isinstance(value, t)), None)
    if kind is None:
        raise TypeError(f"no BigQuery parameter type for {name}={type(value).__name__}")
    return bigquery.ScalarQueryParameter(name, kind, value)
