"""Every kind of alert message, as the Slack stand-in receives it over real HTTP.

The state machine runs on a scripted hour of checks: a gap that lasts past the reminder
(one of its domains named with Slack control sequences), a 5xx rule incident, recovery,
then a backfill summed up by the next live check. What the stand-in received is printed
(the README shows it) and checked to the character.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import env
from dag_utils import slack as slack_api
from dag_utils.alerting import WindowCheck, decide
from tests.conftest import SLACK_TOKEN

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
HOSTILE = "<!channel> <https://evil.example|login>.example.net"


def check(i: int, missing: int = 0, spiked: bool = False) -> WindowCheck:
    start = T0 + i * STEP
    judged = start - 2 * STEP
    spike = {"rule": "5xx errors", "domain": "d00002.example.net", "value": 0.3}
    return WindowCheck(
        start.isoformat(),
        (start + STEP).isoformat(),
        expected=150,
        missing=missing,
        missing_domains=1 if missing else 0,
        missing_minutes=missing,
        sample_domains=[HOSTILE] if missing else [],
        sample_minutes=[int((judged + timedelta(minutes=m)).timestamp()) for m in range(missing)],
        judged_start=judged.isoformat(),
        judged_end=(judged + STEP).isoformat(),
        findings=[spike] if spiked else [],
    )


def test_each_kind_of_message_reaches_slack_exactly_as_rendered(slack, capsys) -> None:
    client = slack_api.client(SLACK_TOKEN, slack.api_url)
    checks = [(check(i, missing=5, spiked=3 <= i < 6), True) for i in range(14)]
    checks += [(check(14), True)]
    checks += [(check(i, missing=2 * (i % 2)), False) for i in range(15, 21)]  # a backfill
    checks += [(check(21), True)]
    state, sent = {}, []
    for window_check, live in checks:
        state, message = decide(state, window_check, live, env.ALERT_REMINDER)
        if message:
            slack_api.post(client, env.ALERT_CHANNEL, message.text, message.blocks)
            sent.append(message)
    received = slack.messages()
    assert [m["text"] for m in received] == [m.text for m in sent]
    assert [m["blocks"] for m in received] == [m.blocks for m in sent]
    assert [m.kind for m in sent] == ["opened", "opened", "recovered", "reminder", "recovered",
                                      "catchup"]  # fmt: skip
    hostile = "&lt;!channel&gt; &lt;https://evil.example|login&gt;.example.net"
    assert received[0]["text"] == (
        ":rotating_light: CDN data missing for 18:50-18:55 KST (09:50-09:55 UTC)\n"
        f"5 of 150 domain-minutes missing: 1 domain ({hostile}); "
        "5 minutes (18:50, 18:51, 18:52, 18:53, 18:54 KST (09:50, 09:51, 09:52, 09:53, 09:54 UTC))"
    )
    assert "<" not in "".join(m["text"] for m in received)
    with capsys.disabled():
        print("\n" + "\n---\n".join(m["text"] for m in received))
