"""The one Slack client factory, and posting a message.

slack_sdk is imported when a client is built, in the task that posts: DAG files import
this module (through `tokens`) for `TokenRejected` alone, at every parse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slack_sdk import WebClient

RETRIES = 3  # each of: 429 (honouring Retry-After), 5xx, connection errors
TOKEN_REFUSALS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)


class TokenRejected(Exception):
    """Slack refused the token: no retry can help until someone fixes the connection."""


def client(token: str, base_url: str | None = None) -> WebClient:
    """A WebClient that retries 429, 5xx and connection errors itself.

    `base_url` points it at the local stand-in; unset, it is Slack's own API.
    """
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    return WebClient(
        token=token,
        base_url=base_url or WebClient.BASE_URL,
        timeout=15,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=RETRIES),
            ServerErrorRetryHandler(max_retry_count=RETRIES),
            ConnectionErrorRetryHandler(max_retry_count=RETRIES),
        ],
    )


def post(slack: WebClient, channel: str, text: str, blocks: list[dict[str, Any]]) -> str:
    """Post a message; its ts.

    Raises TokenRejected for a refused token, SlackApiError if Slack refuses the message
    otherwise or stays down after the client's own retries.
    """
    from slack_sdk.errors import SlackApiError

    try:
        return slack.chat_postMessage(channel=channel, text=text, blocks=blocks)["ts"]
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        if error in TOKEN_REFUSALS:
            raise TokenRejected(f"Slack refused the token: {error}") from None
        raise
