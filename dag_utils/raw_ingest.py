"""DAG 1's work: fetch a window from the CDN API and publish it to the raw table.

`plan_shards` lists the domains and cuts them into shards of `env.SHARD_SIZE`.
`fetch_shard` (one mapped task per shard, each holding a slot of the API pool) fetches
its domains for the window, and the earlier minutes of its domains still incomplete
within the late-data horizon. It streams the records into a Parquet file and loads it
into a staging table of its own. `publish` combines the shards' staging tables and
writes them into the raw table, with the audit row, in one transaction. A failure at any
step leaves the raw table as it was; a retry or a rerun repeats the step idempotently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.exceptions import NotFound

import env
from dag_utils import bigquery, bigquery_jobs, sql, tables
from dag_utils.cdn_api import ENDPOINTS, CdnApiClient, ClientSettings, DomainMinute
from dag_utils.windows import Window

log = logging.getLogger(__name__)

_BATCH_ROWS = 1_000
_SHARD_COUNTS = ("domains", "calls", "retries", "failures", "complete", "incomplete",
                 "refetched", "filled")  # fmt: skip
_STAGING_ARROW = pa.schema(
    [
        pa.field("minute", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("metrics", pa.string()),
        pa.field("errors", pa.string()),
        pa.field("complete", pa.bool_(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


def base_url(host: str | None, schema: str | None = None, port: int | None = None) -> str:
    """The API base URL from an Airflow Connection's parts."""
    if not host:
        raise ValueError(f"the {env.CDN_API_CONN_ID} connection has no host")
    if "://" in host:
        scheme, url = host.split("://", 1)[0].lower(), host.rstrip("/")
    else:
        scheme = (schema or "https").lower()
        url = f"{scheme}://{host}" + (f":{port}" if port else "")
    if scheme not in ("http", "https"):
        raise ValueError(
            f"the {env.CDN_API_CONN_ID} connection gives the scheme {scheme!r}: only http or "
            "https. A URI-form secret puts its path in `schema`: store the JSON form with "
            '"host": "https://api.example.com/v1" instead (see README)'
        )
    return url


def staging_table(run_id: str, shard: int | None = None) -> str:
    """A staging table of the run's own (and of one shard), named from a hash of its run id."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:16]
    suffix = "" if shard is None else f"_{shard}"
    return bigquery.table_id(f"{env.STAGING_TABLE_PREFIX}{digest}{suffix}")


def shards_of(domains: list[str], size: int) -> list[list[str]]:
    """Consecutive slices of at most `size` domains; one when the account is small."""
    if size < 1:
        raise ValueError("the shard size must be at least 1")
    return [domains[i : i + size] for i in range(0, len(domains), size)] or [[]]


def write_staging_file(records: Iterable[DomainMinute], path: Path, run_id: str) -> int:
    """Stream records into a Parquet file of RAW_STAGING_SCHEMA; rows written.

    Each record becomes its row's column values at once and is let go: what is held is
    one batch of short strings, written out as a row group every `_BATCH_ROWS` rows.
    """
    rows = 0
    with pq.ParquetWriter(path, _STAGING_ARROW) as writer:
        columns = _empty_columns()
        for record in records:
            columns["minute"].append(datetime.fromtimestamp(record.minute, UTC))
            columns["domain"].append(record.domain)
            metrics = {e: record.metrics.get(e) for e in ENDPOINTS}
            # allow_nan=False: a NaN here is a bug upstream (the client nulls them), and it
            # must fail this task rather than the publishing transaction in BigQuery.
            columns["metrics"].append(json.dumps(metrics, ensure_ascii=False, allow_nan=False))
            columns["errors"].append(json.dumps(record.errors, ensure_ascii=False, allow_nan=False))
            columns["complete"].append(record.complete)
            if len(columns["domain"]) == _BATCH_ROWS:
                rows += _write_batch(writer, columns, run_id)
                columns = _empty_columns()
        if columns["domain"]:
            rows += _write_batch(writer, columns, run_id)
    return rows


def _empty_columns() -> dict[str, list[Any]]:
    return {"minute": [], "domain": [], "metrics": [], "errors": [], "complete": []}


def _write_batch(writer: pq.ParquetWriter, columns: dict[str, list[Any]], run_id: str) -> int:
    n = len(columns["domain"])
    now = datetime.now(UTC)  # when the API answered, to the batch
    batch = columns | {"run_id": [run_id] * n, "fetched_at": [now] * n}
    writer.write_table(pa.Table.from_pydict(batch, schema=_STAGING_ARROW))
    return n


def plan_shards(
    api_url: str, token: str, settings: ClientSettings = env.CDN_CLIENT
) -> list[list[str]]:
    """The domains the API lists, cut into shards; creates the tables when missing."""
    bq = bigquery.client()
    bigquery.ensure_tables(bq, tables.RAW, tables.AUDIT)
    domains = CdnApiClient(api_url, token, settings).list_domains()
    shards = shards_of(domains, env.SHARD_SIZE)
    log.info("%d domains in %d shards of at most %d", len(domains), len(shards), env.SHARD_SIZE)
    return shards


def fetch_shard(
    window: Window,
    run_id: str,
    shard: int,
    domains: list[str],
    api_url: str,
    token: str,
    settings: ClientSettings = env.CDN_CLIENT,
) -> dict[str, Any]:
    """Fetch one shard's domains for the window, and their late minutes, into staging.

    Returns what `publish` needs (no secrets: it travels through XCom).
    """
    started = time.monotonic()
    bq = bigquery.client()
    client = CdnApiClient(api_url, token, settings)
    fresh = (DomainMinute(d, m) for d in domains for m in window.minutes)
    late = _incomplete_rows(bq, domains, *window.late_range(env.LATE_DATA_HORIZON))
    counts = {"complete": 0, "incomplete": 0, "refetched": 0, "filled": 0}
    window_start = int(window.start.timestamp())

    def tally(fetched: Iterator[DomainMinute]) -> Iterator[DomainMinute]:
        for record in fetched:
            if record.minute < window_start:
                counts["refetched"] += 1
                counts["filled"] += record.complete
            else:
                counts["complete" if record.complete else "incomplete"] += 1
            yield record

    staging = staging_table(run_id, shard)
    with tempfile.TemporaryDirectory(prefix="cdn-raw-") as tmp:
        path = Path(tmp) / "staging.parquet"
        write_staging_file(tally(client.fetch(chain(fresh, late))), path, run_id)
        loaded = bigquery.load_parquet(bq, path, staging, tables.RAW_STAGING_SCHEMA)
    _expire(bq, staging)
    stats = client.summary()
    log.info("shard %d: staged %d rows in %s: %s", shard, loaded, staging, counts)
    return {
        "staging_table": staging,
        "domains": len(domains),
        "calls": stats["calls"],
        "retries": stats["retries"],
        "failures": stats["failures"],
        **counts,
        "fetch_seconds": round(time.monotonic() - started, 3),
        "client_stats": stats,
    }


def publish(window: Window, run_id: str, shards: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the shards' staged rows into the raw table and the audit row, in one transaction.

    First cancels any write a killed try left running (it could commit beside this one).
    """
    bq = bigquery.client()
    bigquery_jobs.end_dead_writes(bq, env.BQ_WRITERS)
    names = bigquery.table_ids()
    staged = [s["staging_table"] for s in shards]
    audit_key = {"window_start": window.start, "run_id": run_id}
    try:
        for table in staged:
            bq.get_table(table)
    except NotFound:
        done = bigquery.query(bq, sql.SELECT_AUDIT_ROW.format(**names), audit_key)
        if done:  # an earlier try committed and dropped the staging tables
            return _audit_summary(dict(done[0]))
        raise
    combined = staging_table(run_id)
    union = "\nUNION ALL\n".join(f"SELECT * FROM `{t}`" for t in staged)  # noqa: S608 - our ids
    bigquery.query(bq, sql.COMBINE_STAGING.format(staging=combined, shards=union), {})
    since, _ = window.late_range(env.LATE_DATA_HORIZON)
    lost_since, lost_until = window.lost_range(env.LATE_DATA_HORIZON)
    params: dict[str, Any] = {key: sum(s[key] for s in shards) for key in _SHARD_COUNTS}
    params |= {
        "run_id": run_id,
        "fetch_seconds": max(s["fetch_seconds"] for s in shards),
        "window_start": window.start,
        "window_end": window.end,
        "since": since,
        "until": window.end,
        "lost_since": lost_since,
        "lost_until": lost_until,
        "client_stats": json.dumps(
            {"shards": [s["client_stats"] for s in shards]}, allow_nan=False
        ),
    }
    statement = sql.PUBLISH_RAW.format(staging=combined, **names)
    bigquery.query(bq, statement, params)
    for table in (*staged, combined):
        bq.delete_table(table, not_found_ok=True)
    row = bigquery.query(bq, sql.SELECT_AUDIT_ROW.format(**names), audit_key)
    summary = _audit_summary(dict(row[0]))
    log.info("published %s", summary)
    return summary


def _audit_summary(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("run_id", "domains", "calls", "retries", "complete", "incomplete", "refetched",
            "filled", "lost")  # fmt: skip
    return {k: row[k] for k in keep} | {"window_start": row["window_start"].isoformat()}


def _incomplete_rows(
    bq: Any, domains: list[str], since: datetime, until: datetime
) -> Iterator[DomainMinute]:
    """Earlier incomplete records of these domains in [since, until).

    The query runs now; its rows are read a page at a time as the client asks for them.
    """
    statement = sql.SELECT_INCOMPLETE_RAW.format(**bigquery.table_ids())
    params = {"since": since, "until": until, "domains": domains}
    rows = bigquery.query_rows(bq, statement, params, page_size=_BATCH_ROWS)
    return (
        DomainMinute(r["domain"], r["minute"], _object(r["metrics"]), _object(r["errors"]))
        for r in rows
    )


def _object(text: str | None) -> dict[str, Any]:
    value = json.loads(text) if text else None
    return value if isinstance(value, dict) else {}


def _expire(bq: Any, table: str) -> None:
    staged = bq.get_table(table)
    staged.expires = datetime.now(UTC) + env.STAGING_EXPIRATION
    bq.update_table(staged, ["expires"])
