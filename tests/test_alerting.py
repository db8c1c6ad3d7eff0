"""The incident state machine and its messages: one per incident start, reminders, recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dag_utils.alerting import WindowCheck, decide
from dag_utils.windows import is_live

HOUR = timedelta(hours=1)
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def check(i: int, missing: int = 0) -> WindowCheck:
    start = T0 + timedelta(minutes=5 * i)
    return WindowCheck(
        (start).isoformat(),
        (start + timedelta(minutes=5)).isoformat(),
        expected=100,
        missing=missing,
        missing_domains=min(missing, 7),
        missing_minutes=min(missing, 5),
        sample_domains=["a'b.example", "도메인.한국"][: min(missing, 2)],
        sample_minutes=[int(start.timestamp())] if missing else [],
    )


def run(checks: list[tuple[WindowCheck, bool]], state: dict | None = None):
    state, kinds, texts = state or {}, [], []
    for window_check, live in checks:
        state, message = decide(state, window_check, live, HOUR)
        if message:
            kinds.append(message.kind)
            texts.append(message.text)
    return state, kinds, texts


def test_a_gap_opens_one_incident_and_its_message_names_the_gap() -> None:
    state, kinds, texts = run([(check(0, missing=7), True)])
    assert kinds == ["opened"]
    assert "10:00-10:05 UTC" in texts[0]
    assert "7 of 100 domain-minutes missing" in texts[0] and "a'b.example" in texts[0]
    assert state["incident"]["opened"] == check(0).window_start


def test_a_continuing_incident_is_silent_until_the_reminder_then_recovers_once() -> None:
    gaps = [(check(i, missing=3), True) for i in range(14)]  # 70 minutes of gaps
    state, kinds, _ = run([*gaps, (check(14), True), (check(15), True)])
    assert kinds == ["opened", "reminder", "recovered"]
    assert state["incident"] is None


def test_complete_windows_say_nothing() -> None:
    assert run([(check(i), True) for i in range(5)])[1] == []


def test_catchup_checks_never_post_and_the_next_live_check_sums_them_up_once() -> None:
    backfill = [(check(i, missing=2 if i % 3 else 0), False) for i in range(12)]
    state, kinds, _ = run(backfill)
    assert kinds == []
    state, kinds, texts = run([(check(12), True), (check(13), True)], state)
    assert kinds == ["catchup"]
    assert "8 windows between 10:05 and 11:00 UTC had gaps, 16 domain-minutes" in texts[0]


def test_a_run_is_live_only_when_it_started_soon_after_its_interval() -> None:
    assert is_live(T0 + timedelta(minutes=2), T0, "scheduled")
    assert not is_live(T0 + timedelta(hours=2), T0, "scheduled")  # catchup
    assert not is_live(T0 + timedelta(minutes=2), T0, "backfill")
