"""The Slack wrapper against the Slack Web API stand-in."""

from __future__ import annotations

import logging

import pytest
from slack_sdk.errors import SlackApiError

from dag_utils import slack as slack_api
from tests.conftest import SLACK_TOKEN

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "gap"}}]


def test_a_message_is_posted_with_text_and_blocks(slack) -> None:
    client = slack_api.client(SLACK_TOKEN, slack.api_url)
    assert client.auth_test()["ok"]
    ts = slack_api.post(client, "#cdn-alerts", "gap", BLOCKS)
    assert slack.messages() == [
        {"channel": "#cdn-alerts", "text": "gap", "blocks": BLOCKS, "ts": ts}
    ]


def test_429_then_200_is_delivered_once(slack) -> None:
    slack.configure(rate_limit_next=1, retry_after_s=1)
    slack_api.post(slack_api.client(SLACK_TOKEN, slack.api_url), "#cdn-alerts", "gap", BLOCKS)
    assert len(slack.messages()) == 1


def test_slack_down_raises_after_retries(slack) -> None:
    slack.configure(down=True)
    with pytest.raises(SlackApiError):
        slack_api.post(slack_api.client(SLACK_TOKEN, slack.api_url), "#cdn-alerts", "gap", BLOCKS)
    assert slack.messages() == []


def test_refusals_are_errors_and_the_token_is_never_logged(slack, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = slack_api.client(SLACK_TOKEN, slack.api_url)
    with pytest.raises(SlackApiError, match="channel_not_found"):
        slack_api.post(client, "#nowhere", "gap", BLOCKS)
    with pytest.raises(slack_api.TokenRejected, match="invalid_auth"):
        slack_api.post(slack_api.client("wrong-token", slack.api_url), "#cdn-alerts", "x", BLOCKS)
    with pytest.raises(slack_api.TokenRejected, match="not_authed"):
        slack_api.post(slack_api.client("", slack.api_url), "#cdn-alerts", "x", BLOCKS)
    assert "chat.postMessage" in caplog.text
    assert SLACK_TOKEN not in caplog.text
