"""What a task does when a service rejects the token of its connection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException

from dag_utils import slack
from dag_utils.cdn_api import AuthError


@contextmanager
def rejected_token_fails_now(conn_id: str) -> Iterator[None]:
    """A token the CDN API or Slack rejects fails the task at once: retrying cannot fix it.
    So does a channel Slack will not let the app post to (not a member, not found, archived):
    the message says what to fix."""
    try:
        yield
    except slack.ChannelRefused as exc:
        raise AirflowFailException(f"{exc}; then clear the task") from exc
    except (AuthError, slack.TokenRejected) as exc:
        service = "Slack" if isinstance(exc, slack.TokenRejected) else "the CDN API"
        raise AirflowFailException(
            f"{service} rejected the {conn_id} token: fix the connection, then clear the task"
        ) from exc
