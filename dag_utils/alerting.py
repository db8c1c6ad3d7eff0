"""DAG 3's work: check a window for missing data and decide what, if anything, to say.

`decide` is a pure state machine over the incident state (kept in an Airflow Variable by
the DAG): one message when an incident starts, silence while it lasts (a reminder at
most every `reminder`), one message when data is complete again. Checks of runs that
are not live (catchup, backfill) never post; the next live check posts one summary.
The clock is the window's own end, never the wall clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import env
from dag_utils import bigquery, sql, tables
from dag_utils.windows import Window


@dataclass(frozen=True)
class WindowCheck:
    window_start: str  # ISO-8601, UTC
    window_end: str
    expected: int  # domain-minutes that should be there
    missing: int  # of those, with no complete dashboard row
    missing_domains: int
    missing_minutes: int
    sample_domains: list[str]
    sample_minutes: list[int]  # unix seconds


@dataclass(frozen=True)
class Message:
    kind: str  # opened | reminder | recovered | catchup
    text: str
    blocks: list[dict[str, Any]]


def check_window(window: Window) -> WindowCheck:
    bq = bigquery.client()
    bigquery.ensure_tables(bq, tables.RAW, tables.DASHBOARD)
    params = {
        "window_start": window.start,
        "window_end": window.end,
        "lookback_start": window.start - env.EXPECTED_DOMAINS_LOOKBACK,
    }
    (row,) = bigquery.query(bq, sql.CHECK_WINDOW.format(**bigquery.table_ids()), params)
    return WindowCheck(
        window.start.isoformat(),
        window.end.isoformat(),
        row["expected"],
        row["missing"],
        row["missing_domains"],
        row["missing_minutes"],
        list(row["sample_domains"]),
        list(row["sample_minutes"]),
    )


def decide(
    state: dict[str, Any], check: WindowCheck, live: bool, reminder: timedelta
) -> tuple[dict[str, Any], Message | None]:
    """The incident state after this check, and the one message to post (or None)."""
    state = {"incident": state.get("incident"), "catchup": state.get("catchup")}
    if not live:
        if check.missing:
            state["catchup"] = _add_catchup(state["catchup"], check)
        return state, None
    catchup, state["catchup"] = state["catchup"], None
    incident = state["incident"]
    kind = None
    if check.missing and incident is None:
        kind = "opened"
        state["incident"] = {
            "opened": check.window_start,
            "last_notified": check.window_end,
            "windows": 1,
        }
    elif check.missing:
        incident = {**incident, "windows": incident["windows"] + 1}
        due = _at(check.window_end) - _at(incident["last_notified"]) >= reminder
        if due:
            kind, incident["last_notified"] = "reminder", check.window_end
        state["incident"] = incident
    elif incident is not None:
        kind, state["incident"] = "recovered", None
    if kind is None and catchup is None:
        return state, None
    return state, render(kind or "catchup", check, incident, catchup)


def render(kind: str, check: WindowCheck, incident: dict | None, catchup: dict | None) -> Message:
    """The message text (and the same lines as Block Kit sections) for one decision."""
    window = f"{_hhmm(check.window_start)}-{_hhmm(check.window_end)} UTC"
    since = f", since {_hhmm(incident['opened'])} UTC" if incident else ""
    headline = {
        "opened": f":rotating_light: CDN data missing for {window}",
        "reminder": f":hourglass: CDN data still missing for {window}{since}",
        "recovered": f":white_check_mark: CDN data complete again for {window}",
        "catchup": f":information_source: catch-up runs found gaps (latest window {window})",
    }[kind]
    lines = [headline]
    if check.missing:
        lines.append(_missing_line(check))
    if catchup:
        lines.append(
            f"Catch-up: {catchup['windows']} windows between {_hhmm(catchup['first'])} and "
            f"{_hhmm(catchup['last'])} UTC had gaps, {catchup['missing']} domain-minutes in all"
        )
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": line}} for line in lines]
    return Message(kind, "\n".join(lines), blocks)


def _missing_line(check: WindowCheck) -> str:
    more = check.missing_domains - len(check.sample_domains)
    domains = ", ".join(check.sample_domains) + (f" and {more} more" if more > 0 else "")
    minutes = ", ".join(_hhmm(m) for m in check.sample_minutes)
    if check.missing_minutes > len(check.sample_minutes):
        minutes += ", ..."
    return (
        f"{check.missing} of {check.expected} domain-minutes missing: "
        f"{_count(check.missing_domains, 'domain')} ({domains}); "
        f"{_count(check.missing_minutes, 'minute')} ({minutes})"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _add_catchup(catchup: dict | None, check: WindowCheck) -> dict[str, Any]:
    if catchup is None:
        return {
            "windows": 1,
            "missing": check.missing,
            "first": check.window_start,
            "last": check.window_end,
        }
    return {
        "windows": catchup["windows"] + 1,
        "missing": catchup["missing"] + check.missing,
        "first": min(catchup["first"], check.window_start),
        "last": max(catchup["last"], check.window_end),
    }


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def _hhmm(value: str | int) -> str:
    moment = datetime.fromtimestamp(value, UTC) if isinstance(value, int) else _at(value)
    return moment.astimezone(UTC).strftime("%H:%M")


def as_dict(check: WindowCheck) -> dict[str, Any]:
    return asdict(check)
