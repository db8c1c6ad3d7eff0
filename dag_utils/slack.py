"""The one Slack client factory, and posting a message."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

RETRIES = 3  # each of: 429 (honouring Retry-After), 5xx, connection errors


def client(token: str, base_url: str | None = None) -> WebClient:
    """A WebClient that retries 429, 5xx and connection errors itself.

    `base_url` points it at the local stand-in; unset, it is Slack's own API.
    """
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
    """Post a message; its ts. Raises SlackApiError if Slack refuses it or stays down."""
    return slack.chat_postMessage(channel=channel, text=text, blocks=blocks)["ts"]
