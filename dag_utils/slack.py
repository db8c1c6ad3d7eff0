"""The one Slack client factory, posting a message, and what the app may post to.

slack_sdk is imported when a client is built, in the task that posts: DAG files import
this module (through `tokens`) for `TokenRejected` alone, at every parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slack_sdk import WebClient

RETRIES = 3  # each of: 429 (honouring Retry-After), 500/502/503/504, connection errors
TOKEN_REFUSALS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
# Slack refuses the channel: no retry helps until someone invites the app or fixes the setting.
CHANNEL_FIXES = {
    "not_in_channel": "invite the app to {channel} (`/invite @<app>` in the channel), or "
    "grant it the chat:write.public scope (public channels only) and reinstall it",
    "channel_not_found": "check CDN_ALERT_CHANNEL ({channel}); a private channel is only "
    "found once the app is in it: `/invite @<app>` in the channel",
    "is_archived": "unarchive {channel}, or set CDN_ALERT_CHANNEL to a channel in use",
}
POST_SCOPE, PUBLIC_SCOPE = "chat:write", "chat:write.public"


class TokenRejected(Exception):
    """Slack refused the token: no retry can help until someone fixes the connection."""


class ChannelRefused(Exception):
    """Slack refused to post to the channel; the message says how to fix it."""

    def __init__(self, channel: str, error: str) -> None:
        super().__init__(channel_refusal(channel, error))


def channel_refusal(channel: str, error: str) -> str:
    """What Slack's refusal of a channel means, and how to fix it."""
    fix = CHANNEL_FIXES[error].format(channel=channel)
    return f"Slack refuses posts to {channel}: {error}: {fix}"


def client(token: str, base_url: str | None = None) -> WebClient:
    """A WebClient that retries 429, 5xx and connection errors itself.

    `base_url` points it at the local stand-in; unset, it is Slack's own API.
    """
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
    )

    from dag_utils.slack_retries import ServerErrorsRetryHandler

    return WebClient(
        token=token,
        base_url=base_url or WebClient.BASE_URL,
        timeout=15,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=RETRIES),
            ServerErrorsRetryHandler(max_retry_count=RETRIES),
            ConnectionErrorRetryHandler(max_retry_count=RETRIES),
        ],
    )


def post(slack: WebClient, channel: str, text: str, blocks: list[dict[str, Any]]) -> str:
    """Post a message; its ts.

    Raises TokenRejected for a refused token, ChannelRefused when the app cannot post to
    the channel, SlackApiError if Slack refuses the message otherwise or stays down after
    the client's own retries.
    """
    from slack_sdk.errors import SlackApiError

    try:
        return slack.chat_postMessage(channel=channel, text=text, blocks=blocks)["ts"]
    except SlackApiError as exc:
        error = _error_of(exc)
        if error in TOKEN_REFUSALS:
            raise TokenRejected(f"Slack refused the token: {error}") from None
        if error in CHANNEL_FIXES:
            raise ChannelRefused(channel, error) from None
        raise


@dataclass(frozen=True)
class PostingAccess:
    """What `make provision` found: can the app post to the channel, and if not, why."""

    ok: bool
    detail: str


def posting_access(slack: WebClient, channel: str) -> PostingAccess:
    """Whether the token can post to `channel`, without posting: auth.test (the token, and
    its scopes in the x-oauth-scopes header), then the channel's is_member / is_archived from
    conversations.info (a channel ID) or conversations.list (a #name: conversations.info
    takes IDs only). Needs channels:read (and groups:read for a private channel)."""
    from slack_sdk.errors import SlackApiError

    try:
        auth = slack.auth_test()
    except SlackApiError as exc:
        if _error_of(exc) in TOKEN_REFUSALS:
            return PostingAccess(False, f"auth.test refused the token: {_error_of(exc)}")
        return PostingAccess(False, f"auth.test failed: {_failure(exc)}")
    scopes = set(_header(auth.headers, "x-oauth-scopes").replace(" ", "").split(","))
    if POST_SCOPE not in scopes:
        return PostingAccess(False, f"the token lacks the {POST_SCOPE} scope: add it, reinstall")
    try:
        found = _conversation(slack, channel)
    except SlackApiError as exc:
        error = _error_of(exc)
        if error == "missing_scope":
            needed = exc.response.get("needed", "channels:read,groups:read")
            return PostingAccess(False, f"cannot look up {channel}: grant {needed} to the app")
        return PostingAccess(False, f"looking up {channel} failed: {_failure(exc)}")
    if found is None:
        return PostingAccess(False, channel_refusal(channel, "channel_not_found"))
    if found.get("is_archived"):
        return PostingAccess(False, channel_refusal(channel, "is_archived"))
    if found.get("is_member"):
        return PostingAccess(True, f"the app is a member of {channel}")
    if PUBLIC_SCOPE in scopes and not found.get("is_private"):
        return PostingAccess(True, f"{channel} is public and the token has {PUBLIC_SCOPE}")
    return PostingAccess(False, channel_refusal(channel, "not_in_channel"))


def _conversation(slack: WebClient, channel: str) -> dict[str, Any] | None:
    if not channel.startswith("#"):
        return slack.conversations_info(channel=channel)["channel"]
    for kind in ("public_channel", "private_channel"):  # channels:read, then groups:read
        cursor = None
        while True:
            page = slack.conversations_list(types=kind, limit=200, cursor=cursor)
            for found in page["channels"]:
                if found["name"] == channel[1:]:
                    return found
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
    return None


def _header(headers: dict[str, Any], name: str) -> str:
    """A response header, whatever its case; slack_sdk keeps urllib's list of values."""
    for key, value in headers.items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) else value
    return ""


def _error_of(exc: Any) -> str | None:
    return exc.response.get("error") if exc.response is not None else None


def _failure(exc: Any) -> str:
    """Slack's error, or the HTTP status of an answer other than 200 (a 5xx of its edge)."""
    status = exc.response.status_code
    return str(_error_of(exc)) if status == 200 else f"HTTP {status}"
