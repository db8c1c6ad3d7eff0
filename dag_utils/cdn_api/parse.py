"""Pure parsing of CDN API response bodies (../shared/cdn-api.md)."""

from __future__ import annotations

import json
import math
import time
from email.utils import parsedate_to_datetime
from typing import Any

ENDPOINT_METRICS: dict[str, tuple[str, ...]] = {
    "traffic": ("bytes", "bps", "requests"),
    "status": ("status_2xx", "status_3xx", "status_4xx", "status_5xx", "error_ratio"),
    "cache": ("hit", "miss", "hit_ratio"),
}
ENDPOINTS = tuple(ENDPOINT_METRICS)


class MalformedResponse(ValueError):
    """The body does not follow the contract."""


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise MalformedResponse(f"body is not JSON ({len(raw)} bytes)") from exc
    if not isinstance(body, dict) or not isinstance(body.get("rtcode"), str):
        raise MalformedResponse("body has no string rtcode")
    return body


def domain_names(body: dict[str, Any]) -> list[str]:
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(d, str) and d for d in data):
        raise MalformedResponse("domain_list data is not a list of names")
    return list(dict.fromkeys(data))


def rows_by_minute(body: dict[str, Any], endpoint: str) -> dict[int, dict[str, Any]]:
    """Every row of `data`, keyed by its `date`, columns matched by name.

    The `date` column is removed; metric values are numbers >= 0, None, or a non-finite
    float (NaN, Infinity: see `without_nonfinite`); columns the contract does not name
    are kept as they come.
    """
    columns, data = body.get("metric"), body.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise MalformedResponse("metric is not a list of column names")
    if len(set(columns)) != len(columns) or "date" not in columns:
        raise MalformedResponse("metric has duplicate names or no date column")
    if not isinstance(data, list):
        raise MalformedResponse("data is not a list")
    rows: dict[int, dict[str, Any]] = {}
    for raw_row in data:
        if not isinstance(raw_row, list) or len(raw_row) != len(columns):
            raise MalformedResponse("a data row does not match the metric columns")
        row = dict(zip(columns, raw_row, strict=True))
        minute = row.pop("date")
        if not _is_number(minute) or minute % 60 or minute in rows:
            raise MalformedResponse(f"bad or repeated date {minute!r}")
        for name in ENDPOINT_METRICS[endpoint]:
            value = row.get(name)
            if value is not None and not (_is_number(value) and value >= 0) and finite(value):
                raise MalformedResponse(f"{name} is not a non-negative number")
        rows[int(minute)] = row
    return rows


def without_nonfinite(row: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The row with each column holding a NaN or an infinity (anywhere inside) set to None,
    and the names of those columns. BigQuery's JSON has no such numbers: PARSE_JSON
    refuses them, so they must never reach it.
    """
    bad = [name for name, value in row.items() if not finite(value)]
    return {name: None if name in bad else value for name, value in row.items()}, bad


def finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a JSON value."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - (now or time.time())
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
