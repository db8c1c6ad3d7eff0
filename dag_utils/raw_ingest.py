"""DAG 1's work: fetch a window from the CDN API and publish it to the raw table.

`fetch_to_staging` (holds a slot of the API pool) fetches the window and the earlier
minutes still incomplete within the late-data horizon, streams the records into a
Parquet file and loads it into a staging table of its own. `publish` then writes the
staging table into the raw table and the audit row in one transaction. A failure at any
step leaves the raw table as it was; a retry or a rerun repeats the step idempotently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.exceptions import NotFound

import env
from dag_utils import bigquery, sql, tables
from dag_utils.cdn_api import ENDPOINTS, CdnApiClient, ClientSettings, DomainMinute

log = logging.getLogger(__name__)

_BATCH_ROWS = 5_000
_FETCH_COUNTS = ("run_id", "domains", "calls", "retries", "failures", "complete", "incomplete",
                 "refetched", "filled", "fetch_seconds")  # fmt: skip
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


@dataclass(frozen=True)
class Window:
    """The minutes [start, end) one run is responsible for."""

    start: datetime
    end: datetime

    @property
    def minutes(self) -> list[int]:
        return list(range(int(self.start.timestamp()), int(self.end.timestamp()), 60))

    def late_range(self, horizon: timedelta) -> tuple[datetime, datetime]:
        """Earlier minutes this run fetches again if they are still incomplete."""
        return self.start - horizon, self.start

    def lost_range(self, horizon: timedelta) -> tuple[datetime, datetime]:
        """Minutes that pass the horizon with this run: still incomplete means lost.

        Windows tile time, so each minute is in exactly one run's lost range.
        """
        return self.start - horizon - (self.end - self.start), self.start - horizon


def window_for(interval_start: datetime, interval_end: datetime, lag: timedelta) -> Window:
    """The run's window: its data interval shifted back by the availability lag."""
    start, end = interval_start.astimezone(UTC) - lag, interval_end.astimezone(UTC) - lag
    if end <= start or start.timestamp() % 60 or end.timestamp() % 60:
        raise ValueError(f"a data interval of whole minutes is needed, not {start}..{end}")
    return Window(start, end)


def base_url(host: str | None, schema: str | None = None, port: int | None = None) -> str:
    """The API base URL from an Airflow Connection's parts."""
    if not host:
        raise ValueError(f"the {env.CDN_API_CONN_ID} connection has no host")
    if "://" in host:
        return host.rstrip("/")
    return f"{schema or 'https'}://{host}" + (f":{port}" if port else "")


def staging_table(run_id: str) -> str:
    """A staging table of the run's own, named from a hash of its run id."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:16]
    return bigquery.table_id(f"{env.STAGING_TABLE_PREFIX}{digest}")


def merge_refetched(old: DomainMinute, new: DomainMinute) -> DomainMinute:
    """An earlier incomplete record with what a later fetch of its missing endpoints found."""
    metrics = {e: new.metrics.get(e) or old.metrics.get(e) for e in ENDPOINTS}
    errors = {
        e: new.errors.get(e) or old.errors.get(e, "not fetched")
        for e in ENDPOINTS
        if metrics[e] is None
    }
    return DomainMinute(old.domain, old.minute, metrics, errors)


def missing_endpoints(record: DomainMinute) -> tuple[str, ...]:
    return tuple(e for e in ENDPOINTS if record.metrics.get(e) is None)


def write_staging_file(records: Iterable[DomainMinute], path: Path, run_id: str) -> int:
    """Stream records into a Parquet file of RAW_STAGING_SCHEMA, in batches; rows written."""
    rows = 0
    with pq.ParquetWriter(path, _STAGING_ARROW) as writer:
        for batch in _batches(records, _BATCH_ROWS):
            now = datetime.now(UTC)  # when the API answered, to the batch
            columns = {
                "minute": [datetime.fromtimestamp(r.minute, UTC) for r in batch],
                "domain": [r.domain for r in batch],
                "metrics": [json.dumps(r.to_json()["metrics"], ensure_ascii=False) for r in batch],
                "errors": [json.dumps(r.errors, ensure_ascii=False) for r in batch],
                "complete": [r.complete for r in batch],
                "run_id": [run_id] * len(batch),
                "fetched_at": [now] * len(batch),
            }
            writer.write_table(pa.Table.from_pydict(columns, schema=_STAGING_ARROW))
            rows += len(batch)
    return rows


def fetch_to_staging(
    window: Window,
    run_id: str,
    api_url: str,
    token: str,
    settings: ClientSettings = env.CDN_CLIENT,
) -> dict[str, Any]:
    """Fetch the window and the late minutes into this run's staging table.

    Returns what `publish` needs (no secrets: it travels through XCom).
    """
    started = time.monotonic()
    bq = bigquery.client()
    for spec in (tables.RAW, tables.AUDIT):
        bigquery.ensure_table(bq, spec)
    late = _incomplete_rows(bq, *window.late_range(env.LATE_DATA_HORIZON))
    client = CdnApiClient(api_url, token, settings)
    domains = client.list_domains()
    wanted = [(d, m, ENDPOINTS) for d in domains for m in window.minutes]
    wanted += [(r.domain, r.minute, missing_endpoints(r)) for r in late.values()]
    counts = {"complete": 0, "incomplete": 0, "refetched": len(late), "filled": 0}

    def tally(fetched: Iterator[DomainMinute]) -> Iterator[DomainMinute]:
        for record in fetched:
            earlier = late.get((record.domain, record.minute))
            if earlier is not None:
                record = merge_refetched(earlier, record)
                counts["filled"] += record.complete
            else:
                counts["complete" if record.complete else "incomplete"] += 1
            yield record

    staging = staging_table(run_id)
    with tempfile.TemporaryDirectory(prefix="cdn-raw-") as tmp:
        path = Path(tmp) / "staging.parquet"
        write_staging_file(tally(client.fetch(wanted)), path, run_id)
        loaded = bigquery.load_parquet(bq, path, staging, tables.RAW_STAGING_SCHEMA)
    _expire(bq, staging)
    stats = client.summary()
    log.info("staged %d rows in %s: %s", loaded, staging, counts)
    return {
        "run_id": run_id,
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "staging_table": staging,
        "domains": len(domains),
        "calls": stats["calls"],
        "retries": stats["retries"],
        "failures": stats["failures"],
        **counts,
        "fetch_seconds": round(time.monotonic() - started, 3),
        "client_stats": stats,
    }


def publish(fetched: dict[str, Any]) -> dict[str, Any]:
    """Write a staged fetch into the raw table and its audit row, in one transaction."""
    bq = bigquery.client()
    window = Window(
        datetime.fromisoformat(fetched["window_start"]),
        datetime.fromisoformat(fetched["window_end"]),
    )
    names = {"raw": bigquery.table_id(env.RAW_TABLE), "audit": bigquery.table_id(env.AUDIT_TABLE)}
    try:
        bq.get_table(fetched["staging_table"])
    except NotFound:
        done = bigquery.query(
            bq, sql.SELECT_AUDIT_ROW.format(**names), {"run_id": fetched["run_id"]}
        )
        if done:  # an earlier try committed and dropped the staging table
            return _audit_summary(dict(done[0]))
        raise
    since, _ = window.late_range(env.LATE_DATA_HORIZON)
    lost_since, lost_until = window.lost_range(env.LATE_DATA_HORIZON)
    params = {key: fetched[key] for key in _FETCH_COUNTS}
    params |= {
        "window_start": window.start,
        "window_end": window.end,
        "since": since,
        "until": window.end,
        "lost_since": lost_since,
        "lost_until": lost_until,
        "client_stats": json.dumps(fetched["client_stats"]),
    }
    statement = sql.PUBLISH_RAW.format(staging=fetched["staging_table"], **names)
    bigquery.query(bq, statement, params)
    bq.delete_table(fetched["staging_table"], not_found_ok=True)
    row = bigquery.query(bq, sql.SELECT_AUDIT_ROW.format(**names), {"run_id": fetched["run_id"]})
    summary = _audit_summary(dict(row[0]))
    log.info("published %s", summary)
    return summary


def _audit_summary(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("run_id", "domains", "calls", "retries", "complete", "incomplete", "refetched",
            "filled", "lost")  # fmt: skip
    return {k: row[k] for k in keep} | {"window_start": row["window_start"].isoformat()}


def _incomplete_rows(
    bq: Any, since: datetime, until: datetime
) -> dict[tuple[str, int], DomainMinute]:
    statement = sql.SELECT_INCOMPLETE_RAW.format(raw=bigquery.table_id(env.RAW_TABLE))
    rows = bigquery.query(bq, statement, {"since": since, "until": until})
    return {
        (r["domain"], r["minute"]): DomainMinute(
            r["domain"],
            r["minute"],
            json.loads(r["metrics"] or "{}"),
            json.loads(r["errors"] or "{}"),
        )
        for r in rows
    }


def _expire(bq: Any, table: str) -> None:
    staged = bq.get_table(table)
    staged.expires = datetime.now(UTC) + env.STAGING_EXPIRATION
    bq.update_table(staged, ["expires"])


def _batches(items: Iterable[DomainMinute], size: int) -> Iterator[list[DomainMinute]]:
    batch: list[DomainMinute] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
