"""DAG 3's work: check a window for missing data and rule breaches, and decide what to say.

A domain-minute is *missing* only when it is still incomplete `env.ALERT_GRACE` after its
minute ended; before that it is late and pages no one. So the check of a window judges
the minutes whose grace ended during the window, [start - grace, end - grace): windows
tile time, so each minute is judged by exactly one check, as of that window's end.

`decide` is a pure state machine over the incident state (kept in an Airflow Variable by
the DAG). Incidents are the missing data and each (rule, domain) a rule fires for: one
message when one opens, silence while it lasts (a reminder at most every `reminder`),
one message when it ends; everything one check has to say goes out in one message.
Checks of runs that are not live (catchup, backfill) never post; the next live check
posts one summary. A live check of a window older than the latest live check changes
nothing (checks can arrive out of window order). The clock is the window's own end,
never the wall clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import env
from dag_utils import bigquery, sql, tables
from dag_utils.windows import Window

WORST = 3  # domains named per rule; the rest are counted


@dataclass(frozen=True)
class WindowCheck:
    window_start: str  # ISO-8601, UTC
    window_end: str
    expected: int  # domain-minutes judged that should be there
    missing: int  # of those, with no complete dashboard row
    missing_domains: int
    missing_minutes: int
    sample_domains: list[str]
    sample_minutes: list[int]  # unix seconds
    judged_start: str = ""  # the minutes judged, [judged_start, judged_end); ISO-8601, UTC
    judged_end: str = ""
    # Rules firing in the window: {"rule", "domain", "value"}, worst first per rule.
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Message:
    kind: str  # opened | reminder | recovered | catchup
    text: str
    blocks: list[dict[str, Any]]


def judged_minutes(window: Window, grace: timedelta, first: datetime) -> Window:
    """The minutes whose grace ends during the window, none before the pipeline's first."""
    start = max(window.start - grace, first)
    return Window(start, max(start, window.end - grace))


def check_window(window: Window) -> WindowCheck:
    bq = bigquery.client()
    bigquery.ensure_tables(bq, tables.RAW, tables.DASHBOARD)
    first = datetime.fromtimestamp(env.START_DATE.timestamp(), UTC) - env.AVAILABILITY_LAG
    judged = judged_minutes(window, env.ALERT_GRACE, first)
    params = {
        "judged_start": judged.start,
        "judged_end": judged.end,
        "lookback_start": judged.start - env.EXPECTED_DOMAINS_LOOKBACK,
    }
    (row,) = bigquery.query(bq, sql.CHECK_WINDOW.format(**bigquery.table_ids()), params)
    findings = [
        finding
        for name, rule in env.ALERT_RULES.items()
        for finding in _fired(bq, window, name, rule)
    ]
    return WindowCheck(
        window.start.isoformat(),
        window.end.isoformat(),
        row["expected"],
        row["missing"],
        row["missing_domains"],
        row["missing_minutes"],
        list(row["sample_domains"]),
        list(row["sample_minutes"]),
        judged.start.isoformat(),
        judged.end.isoformat(),
        findings,
    )


def _fired(bq: Any, window: Window, name: str, rule: dict[str, Any]) -> list[dict[str, Any]]:
    """The domains one rule fires for in the window, worst first: one set-based query."""
    params = {
        "window_start": window.start,
        "window_end": window.end,
        "streak_start": window.start - timedelta(minutes=rule["minutes"] - 1),
        "minutes": rule["minutes"],
        "threshold": float(rule["threshold"]),
    }
    if "min_requests" in rule:
        params["min_requests"] = rule["min_requests"]
    statement = sql.rule_findings(rule["kind"]).format(dashboard=bigquery.table_ids()["dashboard"])
    return [
        {"rule": name, "domain": r["domain"], "value": r["worst"]}
        for r in bigquery.query(bq, statement, params)
    ]


def decide(
    state: dict[str, Any], check: WindowCheck, live: bool, reminder: timedelta
) -> tuple[dict[str, Any], Message | None]:
    """The incident state after this check, and the one message to post (or None)."""
    state = {
        "incident": state.get("incident"),
        "rules": dict(state.get("rules") or {}),
        "catchup": state.get("catchup"),
        "latest": state.get("latest"),
    }
    if not live:
        if check.missing or check.findings:
            state["catchup"] = _add_catchup(state["catchup"], check)
        return state, None
    if state["latest"] is not None and _at(check.window_end) <= _at(state["latest"]):
        return state, None  # an older window than one already told: it changes nothing
    state["latest"] = check.window_end
    catchup, state["catchup"] = state["catchup"], None
    kind, state["incident"] = _step(state["incident"], bool(check.missing), check, reminder)
    rule_events: dict[str, list[tuple[dict, dict | None]]] = {}
    firing = {_key(f): f for f in check.findings}
    for key in sorted(set(firing) | set(state["rules"])):
        finding = firing.get(key)
        event, state["rules"][key] = _step(state["rules"].get(key), bool(finding), check, reminder)
        if state["rules"][key] is None:
            del state["rules"][key]
        if event:
            rule, domain = key.split("\x1f", 1)
            shown = finding or {"rule": rule, "domain": domain, "value": None}
            rule_events.setdefault(event, []).append((shown, state["rules"].get(key)))
    kinds = [k for k in ("opened", "reminder", "recovered") if k == kind or k in rule_events]
    if not kinds and catchup is None:
        return state, None
    incident = state["incident"] if kind != "recovered" else None
    lines = render_lines(kind, check, incident, rule_events, catchup)
    return state, _message(kinds[0] if kinds else "catchup", lines)


def _key(finding: dict[str, Any]) -> str:
    return f"{finding['rule']}\x1f{finding['domain']}"


def _step(
    incident: dict | None, now_bad: bool, check: WindowCheck, reminder: timedelta
) -> tuple[str | None, dict | None]:
    """One incident's event for this live check (or None), and its state after it."""
    if now_bad and incident is None:
        opened = check.judged_start or check.window_start
        return "opened", {"opened": opened, "last_notified": check.window_end, "windows": 1}
    if now_bad:
        incident = {**incident, "windows": incident["windows"] + 1}
        if _at(check.window_end) - _at(incident["last_notified"]) >= reminder:
            incident["last_notified"] = check.window_end
            return "reminder", incident
        return None, incident
    if incident is not None:
        return "recovered", None
    return None, None


def render_lines(
    kind: str | None,
    check: WindowCheck,
    incident: dict | None,
    rule_events: dict[str, list[tuple[dict, dict | None]]],
    catchup: dict | None,
) -> list[str]:
    """The lines of one message: missing data, then each rule's events, then catch-up."""
    judged = _span(check.judged_start or check.window_start, check.judged_end or check.window_end)
    lines = []
    if kind:
        since = f", since {_times([incident['opened']])}" if incident else ""
        lines.append(
            {
                "opened": f":rotating_light: CDN data missing for {judged}",
                "reminder": f":hourglass: CDN data still missing for {judged}{since}",
                "recovered": f":white_check_mark: CDN data complete again for {judged}",
            }[kind]
        )
        if check.missing:
            lines.append(_missing_line(check))
    headings = {
        "opened": ":rotating_light: {rule} ({what}) for {window}: {domains}",
        "reminder": ":hourglass: {rule} ({what}) still firing for {window}: {domains}",
        "recovered": ":white_check_mark: {rule} back to normal for {window}: {domains}",
    }
    window = _span(check.window_start, check.window_end)
    for event in ("opened", "reminder", "recovered"):
        by_rule: dict[str, list[dict]] = {}
        for finding, _ in rule_events.get(event, []):
            by_rule.setdefault(finding["rule"], []).append(finding)
        for rule, findings in by_rule.items():
            lines.append(
                headings[event].format(
                    rule=rule, what=_describe(rule), window=window, domains=_worst(findings)
                )
            )
    if catchup:
        lines.append(
            f":information_source: Catch-up: {catchup['windows']} windows between "
            f"{_span(catchup['first'], catchup['last'])} had findings: "
            f"{catchup['missing']} domain-minutes missing in all"
            + "".join(
                f"; {rule} fired for {_count(n, 'domain-window')}"
                for rule, n in sorted(catchup.get("rules", {}).items())
            )
        )
    return lines


def _message(kind: str, lines: list[str]) -> Message:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": line}} for line in lines]
    return Message(kind, "\n".join(lines), blocks)


def _describe(rule: str) -> str:
    spec = env.ALERT_RULES.get(rule)
    return rule_summary(spec) if spec else "rule no longer configured"


def rule_summary(spec: dict[str, Any]) -> str:
    """A rule's condition in words, from its declaration in env.py."""
    minutes = _count(spec["minutes"], "minute")
    if spec["kind"] == "error_ratio_above":
        return f"error ratio above {spec['threshold']:.0%} for {minutes} in a row"
    if spec["kind"] == "hit_ratio_below":
        return (
            f"cache hit ratio below {spec['threshold']:.0%} for {minutes} in a row, "
            f"at {spec['min_requests']}+ requests a minute"
        )
    return f"requests under {spec['threshold']:.0%} of the day before for {minutes} in a row"


def _worst(findings: list[dict]) -> str:
    shown = [
        escape(f["domain"]) + (f" ({f['value']:.1%})" if f.get("value") is not None else "")
        for f in findings[:WORST]
    ]
    more = len(findings) - WORST
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _missing_line(check: WindowCheck) -> str:
    more = check.missing_domains - len(check.sample_domains)
    domains = ", ".join(escape(d) for d in check.sample_domains)
    domains += f" and {more} more" if more > 0 else ""
    minutes = _times(check.sample_minutes)
    if check.missing_minutes > len(check.sample_minutes):
        minutes += " and more"
    return (
        f"{check.missing} of {check.expected} domain-minutes missing: "
        f"{_count(check.missing_domains, 'domain')} ({domains}); "
        f"{_count(check.missing_minutes, 'minute')} ({minutes})"
    )


def escape(text: str) -> str:
    """Text that is not ours, made inert for Slack: & < > as entities (Slack's rule)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _add_catchup(catchup: dict | None, check: WindowCheck) -> dict[str, Any]:
    fired: dict[str, int] = {}
    for finding in check.findings:
        fired[finding["rule"]] = fired.get(finding["rule"], 0) + 1
    if catchup is None:
        return {
            "windows": 1,
            "missing": check.missing,
            "first": check.window_start,
            "last": check.window_end,
            "rules": fired,
        }
    rules = dict(catchup.get("rules", {}))
    for rule, n in fired.items():
        rules[rule] = rules.get(rule, 0) + n
    return {
        "windows": catchup["windows"] + 1,
        "missing": catchup["missing"] + check.missing,
        "first": min(catchup["first"], check.window_start, key=_at),
        "last": max(catchup["last"], check.window_end, key=_at),
        "rules": rules,
    }


def _at(value: str | int) -> datetime:
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _zone_label(moment: datetime, zone: ZoneInfo) -> str:
    """The zone's usual abbreviation (KST); its offset (UTC+07) when it has none."""
    name = moment.astimezone(zone).tzname() or zone.key
    return f"UTC{name}" if name[0] in "+-" else name


def _times(values: list[str | int], sep: str = ", ") -> str:
    """Times in the dashboard's zone and in UTC: '19:00, 19:01 KST (10:00, 10:01 UTC)'."""
    zone = ZoneInfo(env.DASHBOARD_TIMEZONE)
    moments = [_at(v) for v in values]
    if not moments:
        return ""
    local = sep.join(m.astimezone(zone).strftime("%H:%M") for m in moments)
    utc = sep.join(m.astimezone(UTC).strftime("%H:%M") for m in moments)
    return f"{local} {_zone_label(moments[0], zone)} ({utc} UTC)"


def _span(start: str, end: str) -> str:
    """'19:00-19:05 KST (10:00-10:05 UTC)'."""
    return _times([start, end], sep="-")


def as_dict(check: WindowCheck) -> dict[str, Any]:
    return asdict(check)
