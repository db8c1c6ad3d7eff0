"""The incident state machine and its messages: one per incident start, reminders, recovery."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.api.datamodels._generated import DagRunType

from dag_utils.alerting import WindowCheck, decide, escape, judged_minutes
from dag_utils.windows import Window, is_live

HOUR = timedelta(hours=1)
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
FIVE = timedelta(minutes=5)


def check(i: int, missing: int = 0, findings: list[dict] | None = None) -> WindowCheck:
    start = T0 + FIVE * i
    return WindowCheck(
        start.isoformat(),
        (start + FIVE).isoformat(),
        expected=100,
        missing=missing,
        missing_domains=min(missing, 7),
        missing_minutes=min(missing, 5),
        sample_domains=["a'b.example", "도메인.한국"][: min(missing, 2)],
        sample_minutes=[int(start.timestamp())] if missing else [],
        findings=findings or [],
    )


def spike(domain: str = "a.example", value: float = 0.3) -> dict:
    return {"rule": "5xx errors", "domain": domain, "value": value}


def run(checks: list[tuple[WindowCheck, bool]], state: dict | None = None):
    state, kinds, texts = state or {}, [], []
    for window_check, live in checks:
        state, message = decide(state, window_check, live, HOUR)
        if message:
            kinds.append(message.kind)
            texts.append(message.text)
    return state, kinds, texts


def test_a_gap_opens_one_incident_and_its_message_names_the_gap_in_seoul_and_utc() -> None:
    state, kinds, texts = run([(check(0, missing=7), True)])
    assert kinds == ["opened"]
    assert texts[0].split("\n") == [
        ":rotating_light: CDN data missing for 19:00-19:05 KST (10:00-10:05 UTC)",
        "7 of 100 domain-minutes missing: 7 domains (a'b.example, 도메인.한국 and 5 more); "
        "5 minutes (19:00 KST (10:00 UTC) and more)",
    ]
    assert state["incident"]["opened"] == check(0).window_start


def test_a_continuing_incident_is_silent_until_the_reminder_then_recovers_once() -> None:
    gaps = [(check(i, missing=3), True) for i in range(14)]  # 70 minutes of gaps
    state, kinds, texts = run([*gaps, (check(14), True), (check(15), True)])
    assert kinds == ["opened", "reminder", "recovered"]
    assert "since 19:00 KST (10:00 UTC)" in texts[1]
    assert state["incident"] is None


def test_complete_windows_say_nothing() -> None:
    assert run([(check(i), True) for i in range(5)])[1] == []


def test_catchup_checks_never_post_and_the_next_live_check_sums_them_up_once() -> None:
    backfill = [(check(i, missing=2 if i % 3 else 0), False) for i in range(12)]
    state, kinds, _ = run(backfill)
    assert kinds == []
    state, kinds, texts = run([(check(12), True), (check(13), True)], state)
    assert kinds == ["catchup"]
    assert (
        "8 windows between 19:05-20:00 KST (10:05-11:00 UTC) had findings: "
        "16 domain-minutes missing in all" in texts[0]
    )


def test_a_check_older_than_the_latest_live_one_never_reopens_closes_or_reminds() -> None:
    state, kinds, _ = run([(check(5, missing=3), True)])
    assert kinds == ["opened"]
    state, kinds, _ = run([(check(4), True), (check(3), True)], state)  # late, complete
    assert kinds == [] and state["incident"] is not None  # no recovery from the past
    state, kinds, _ = run([(check(6), True), (check(5, missing=3), True)], state)
    assert kinds == ["recovered"] and state["incident"] is None  # and no reopening
    late_gaps = [(check(i, missing=1, findings=[spike()]), True) for i in range(-20, 6)]
    assert run(late_gaps, state)[1] == []  # nor reminders


def test_the_window_judges_the_minutes_whose_grace_ended_in_it() -> None:
    window = Window(T0, T0 + FIVE)
    grace = timedelta(minutes=10)
    judged = judged_minutes(window, grace, first=T0 - HOUR)
    assert (judged.start, judged.end) == (T0 - grace, T0 - grace + FIVE)
    windows = [Window(T0 + FIVE * i, T0 + FIVE * (i + 1)) for i in range(4)]
    tiles = [judged_minutes(w, grace, first=T0 - HOUR) for w in windows]
    assert all(a.end == b.start for a, b in itertools.pairwise(tiles))
    # nothing before the pipeline's first window is judged
    assert judged_minutes(window, grace, first=T0).minutes == []


def test_text_that_is_not_ours_cannot_ping_link_or_format() -> None:
    hostile = "<!channel> <https://evil.example|login> & <!here|x>.example.net"
    assert escape(hostile) == (
        "&lt;!channel&gt; &lt;https://evil.example|login&gt; &amp; &lt;!here|x&gt;.example.net"
    )
    gap = WindowCheck(**{**check(0, missing=1).__dict__, "sample_domains": [hostile]})
    _, message = decide({}, gap, True, HOUR)
    for text in [message.text, *(b["text"]["text"] for b in message.blocks)]:
        assert "<" not in text and ">" not in text
    _, message = decide({}, check(0, findings=[spike(hostile)]), True, HOUR)
    assert "<" not in message.text and escape(hostile) in message.text


def test_each_rule_and_domain_is_an_incident_told_once_reminded_and_recovered() -> None:
    firing = [(check(i, findings=[spike("a.example", 0.25)]), True) for i in range(14)]
    state, kinds, texts = run([*firing, (check(14), True), (check(15), True)])
    assert kinds == ["opened", "reminder", "recovered"]
    assert texts[0] == (
        ":rotating_light: 5xx errors (error ratio above 10% for 3 minutes in a row) for "
        "19:00-19:05 KST (10:00-10:05 UTC): a.example (25.0%)"
    )
    assert texts[2].startswith(":white_check_mark: 5xx errors back to normal for 20:10-20:15")
    assert state["rules"] == {}


def test_all_rules_of_a_window_go_in_one_message_with_the_worst_few_domains() -> None:
    findings = [spike(f"d{i}.example", 0.5 - i / 100) for i in range(5)]
    findings.append({"rule": "cache hit ratio", "domain": "c.example", "value": 0.1})
    _, message = decide({}, check(0, missing=2, findings=findings), True, HOUR)
    lines = message.text.split("\n")
    assert message.kind == "opened" and len(lines) == 4
    assert lines[2].endswith(
        ": d0.example (50.0%), d1.example (49.0%), d2.example (48.0%) and 2 more"
    )
    assert lines[3].endswith(": c.example (10.0%)")


def test_catchup_findings_of_rules_are_summed_up_not_told_one_by_one() -> None:
    backfill = [(check(i, findings=[spike(), spike("b.example")]), False) for i in range(6)]
    state, kinds, _ = run(backfill)
    state, kinds, texts = run([(check(6), True)], state)
    assert kinds == ["catchup"] and "5xx errors fired for 12 domain-windows" in texts[0]


@pytest.mark.parametrize(
    ("run_type", "live"),
    [(DagRunType.SCHEDULED, True), (DagRunType.MANUAL, True), (DagRunType.BACKFILL, False)],
)
def test_a_run_is_live_only_when_it_started_soon_after_its_interval_and_is_no_backfill(
    run_type: DagRunType, live: bool
) -> None:
    assert str(DagRunType.BACKFILL) != "backfill"  # why the value is compared
    assert is_live(T0 + timedelta(minutes=2), T0, run_type) is live
    assert not is_live(T0 + timedelta(hours=2), T0, run_type)  # catchup
