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
    with pytest.raises(slack_api.ChannelRefused, match="channel_not_found"):
        slack_api.post(client, "#nowhere", "gap", BLOCKS)
    with pytest.raises(SlackApiError, match="no_text"):
        slack_api.post(client, "#cdn-alerts", "", [])
    with pytest.raises(slack_api.TokenRejected, match="invalid_auth"):
        slack_api.post(slack_api.client("wrong-token", slack.api_url), "#cdn-alerts", "x", BLOCKS)
    with pytest.raises(slack_api.TokenRejected, match="not_authed"):
        slack_api.post(slack_api.client("", slack.api_url), "#cdn-alerts", "x", BLOCKS)
    assert "chat.postMessage" in caplog.text
    assert SLACK_TOKEN not in caplog.text


def test_a_502_and_a_504_from_slacks_edge_are_retried_and_the_message_posted_once(slack) -> None:
    slack.configure(server_errors_next=[502, 504])
    slack_api.post(slack_api.client(SLACK_TOKEN, slack.api_url), "#cdn-alerts", "gap", BLOCKS)
    assert len(slack.messages()) == 1
    assert slack.configure()["server_errors_next"] == []  # both were answered, then retried


@pytest.mark.parametrize(
    ("flags", "error", "fix"),
    [
        ({"is_member": False}, "not_in_channel", "/invite @<app>"),
        ({"is_member": False}, "not_in_channel", "chat:write.public"),
        ({"is_member": False, "is_private": True}, "channel_not_found", "/invite @<app>"),
        ({"is_archived": True}, "is_archived", "unarchive #cdn-alerts"),
    ],
)
def test_a_channel_slack_refuses_is_refused_at_once_naming_the_fix(
    slack, flags: dict, error: str, fix: str
) -> None:
    slack.set_channel("#cdn-alerts", **flags)
    with pytest.raises(slack_api.ChannelRefused, match=error) as refused:
        slack_api.post(slack_api.client(SLACK_TOKEN, slack.api_url), "#cdn-alerts", "x", BLOCKS)
    assert fix in str(refused.value)
    assert slack.messages() == []


def test_chat_write_public_posts_to_a_public_channel_the_app_is_not_in_only(slack) -> None:
    slack.configure(scopes=["chat:write", "chat:write.public", "channels:read"])
    client = slack_api.client(SLACK_TOKEN, slack.api_url)
    slack.set_channel("#cdn-alerts", is_member=False)
    slack_api.post(client, "#cdn-alerts", "gap", BLOCKS)
    slack.set_channel("#cdn-alerts", is_private=True)
    with pytest.raises(slack_api.ChannelRefused, match="channel_not_found"):
        slack_api.post(client, "#cdn-alerts", "gap", BLOCKS)
    assert len(slack.messages()) == 1


def access(slack, channel: str = "#cdn-alerts", token: str = SLACK_TOKEN):
    return slack_api.posting_access(slack_api.client(token, slack.api_url), channel)


def test_posting_access_says_whether_the_app_can_post_without_posting(slack) -> None:
    assert access(slack) == slack_api.PostingAccess(True, "the app is a member of #cdn-alerts")
    assert "channel_not_found" in access(slack, "#nowhere").detail
    channel_id = slack.set_channel("#cdn-alerts")["id"]
    assert access(slack, channel_id).ok  # an ID: conversations.info
    slack.set_channel("#cdn-alerts", is_member=False)
    for channel in ("#cdn-alerts", channel_id):
        refused = access(slack, channel)
        assert not refused.ok and "not_in_channel" in refused.detail
        assert "/invite @<app>" in refused.detail
    slack.configure(scopes=["chat:write", "chat:write.public", "channels:read"])
    assert access(slack).ok
    slack.set_channel("#cdn-alerts", is_archived=True)
    assert "is_archived" in access(slack).detail
    # without groups:read, a channel that is not public might be private: it cannot tell
    assert (
        access(slack, "#nowhere").detail == "cannot look up #nowhere: grant groups:read to the app"
    )
    assert slack.messages() == []


def test_posting_access_names_a_missing_scope_and_a_refused_token(slack) -> None:
    assert access(slack, token="wrong-token").detail == "auth.test refused the token: invalid_auth"
    slack.configure(scopes=["chat:write"])
    assert access(slack).detail == "cannot look up #cdn-alerts: grant channels:read to the app"
    slack.configure(scopes=["channels:read", "groups:read"])
    assert access(slack).detail == "the token lacks the chat:write scope: add it, reinstall"


def test_posting_access_says_when_slack_stays_down(slack) -> None:
    slack.configure(down=True)
    assert access(slack) == slack_api.PostingAccess(False, "auth.test failed: HTTP 503")
