"""The one BigQuery client factory, and the few operations the pipeline runs with it."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import time
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

import env
from dag_utils.tables import Column, TableSpec

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_-]+$")
log = logging.getLogger(__name__)


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
    """Create the table (and its dataset) when missing; add new columns, never change one.

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
            table.time_partitioning = bigquery.TimePartitioning(field=spec.partition_field)
        table.clustering_fields = list(spec.clustering) or None
        bq.create_table(table, exists_ok=True)
        return
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
    config.labels, config.job_timeout_ms = _job_settings()
    with path.open("rb") as source:
        job = bq.load_table_from_file(
            source, table, job_config=config, job_id_prefix=current_jobs().job_id_prefix()
        )
    with _running(job):
        job.result(timeout=_RESULT_TIMEOUT_S)
    return int(job.output_rows or 0)


def query(bq: bigquery.Client, sql: str, params: Mapping[str, Any]) -> list[bigquery.Row]:
    """Run a statement or script with named parameters and wait for it; all its rows."""
    return list(query_rows(bq, sql, params))


def query_rows(
    bq: bigquery.Client, sql: str, params: Mapping[str, Any], page_size: int | None = None
) -> Iterator[bigquery.Row]:
    """Run a query and wait for it; its rows, fetched a page at a time as they are read."""
    labels, timeout_ms = _job_settings()
    config = bigquery.QueryJobConfig(
        query_parameters=[_parameter(k, v) for k, v in params.items()],
        labels=labels,
        job_timeout_ms=timeout_ms,
    )
    job = bq.query(
        sql,
        job_config=config,
        job_id_prefix=current_jobs().job_id_prefix(),
        location=env.BQ_LOCATION,
    )
    with _running(job):
        rows = job.result(page_size=page_size, timeout=_RESULT_TIMEOUT_S)
    return iter(rows)


# Jobs: each labelled with the task try that started it, bounded by a job timeout, and
# cancelled when its task is killed, times out, or is found dead by a later writer.

_RESULT_TIMEOUT_S = env.BQ_JOB_TIMEOUT.total_seconds() + 60  # BigQuery stops it first
_CANCEL_POLL_S = 1.0


@dataclass(frozen=True)
class JobContext:
    """Who starts the BigQuery jobs: a DAG's task, for a window, in a try.

    Every job carries it as labels (a later try finds a dead try's jobs by them; they also
    attribute cost per window in INFORMATION_SCHEMA.JOBS) and in its job id's prefix.
    """

    dag_id: str = "adhoc"
    task_id: str = "adhoc"
    window_start: datetime | None = None
    try_number: int = 0

    def labels(self) -> dict[str, str]:
        window = f"{self.window_start.astimezone(UTC):%Y%m%dt%H%M}" if self.window_start else ""
        labels = {"dag": self.dag_id, "task": self.task_id, "window_start": window,
                  "try": str(self.try_number)}  # fmt: skip
        return {key: label_value(value) for key, value in labels.items()}

    def job_id_prefix(self) -> str:
        labels = self.labels()
        parts = (labels["dag"], labels["task"], labels["window_start"] or "none")
        return "_".join((*parts, f"try{self.try_number}", ""))


_CONTEXT: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "bigquery_jobs", default=None
)
_STARTED: dict[str, Any] = {}  # job id -> this process's jobs not yet waited for


def label_value(text: str) -> str:
    """A BigQuery label value: lowercase letters, digits, _ and -, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "_", text.lower())[:63]


def current_jobs() -> JobContext:
    return _CONTEXT.get() or JobContext()


@contextlib.contextmanager
def jobs_for(context: JobContext) -> Iterator[JobContext]:
    """Start this block's jobs as `context`'s (labels, job id prefix)."""
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def _job_settings() -> tuple[dict[str, str], int]:
    return current_jobs().labels(), int(env.BQ_JOB_TIMEOUT.total_seconds() * 1000)


@contextlib.contextmanager
def _running(job: Any) -> Iterator[None]:
    """While the caller waits for the job: on_kill can cancel it; an interrupted wait
    (execution timeout, Ctrl-C) or a failed one cancels it before the exception goes on."""
    _STARTED[job.job_id] = job
    try:
        yield
    except BaseException:
        if job.state != "DONE":
            _cancel(job)
        raise
    finally:
        _STARTED.pop(job.job_id, None)


def _cancel(job: Any, bq: bigquery.Client | None = None) -> None:
    try:
        job.cancel(client=bq)
        log.warning("cancelled BigQuery job %s", job.job_id)
    except Exception:  # the job timeout still bounds it
        log.exception("could not cancel BigQuery job %s", job.job_id)


def cancel_started_jobs() -> list[str]:
    """Cancel the jobs this process is waiting for (a task's on_kill), on a client of its
    own: the interrupted wait may be inside the other client's connection pool."""
    started = list(_STARTED.values())
    if started:
        bq = client()
        for job in started:
            _cancel(job, bq)
    return [job.job_id for job in started]


def end_dead_writes(
    bq: bigquery.Client, writers: Mapping[str, str], wait_s: float = env.BQ_CANCEL_WAIT_S
) -> list[str]:
    """Cancel the writing tasks' jobs still pending or running, and wait until they end.

    A writer calls it holding the write pool's one slot, before it writes: any other
    writer job still alive then belongs to a try that was killed (SIGKILL, lost worker)
    and left it running in BigQuery, where it could commit beside this write. `writers`:
    DAG id -> its writing task. Jobs list only by time and state (no label filter in
    jobs.list): the labels are matched here. Raises if one has not ended after `wait_s`.
    """
    wanted = {(label_value(dag), label_value(task)) for dag, task in writers.items()}
    since = datetime.now(UTC) - env.BQ_JOB_TIMEOUT - env.BQ_JOB_LOOKBACK_MARGIN
    alive = [
        job
        for state in ("pending", "running")
        for job in bq.list_jobs(state_filter=state, min_creation_time=since)
        if (job.labels.get("dag"), job.labels.get("task")) in wanted and job.job_id not in _STARTED
    ]
    for job in alive:
        log.warning("a dead try's BigQuery job is still %s: %s %s", job.state, job.job_id,
                    job.labels)  # fmt: skip
        job.cancel(client=bq)
    deadline = time.monotonic() + wait_s
    for job in alive:
        job.reload(client=bq)
        while job.state != "DONE":
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"BigQuery job {job.job_id} of an earlier try is still {job.state} "
                    f"{wait_s:.0f} s after it was cancelled: not writing beside it. The next "
                    "try checks again; the job ends at its job timeout at the latest"
                )
            time.sleep(_CANCEL_POLL_S)
            job.reload(client=bq)
    return [job.job_id for job in alive]


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
