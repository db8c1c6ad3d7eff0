"""slack_sdk's retry of server errors, for every status Slack's edge answers with.

slack_sdk's own ServerErrorRetryHandler retries 500 and 503 only; a 502 or 504 from a
proxy in front of Slack would fail a post at once. Imported by `slack.client` only, so
DAG files never import slack_sdk at parse time.
"""

from __future__ import annotations

from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

SERVER_ERRORS = frozenset({500, 502, 503, 504})


class ServerErrorsRetryHandler(ServerErrorRetryHandler):
    """Retries 500, 502, 503 and 504, with ServerErrorRetryHandler's backoff."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code in SERVER_ERRORS
