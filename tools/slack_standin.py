"""A local stand-in for the Slack Web API methods the project calls.

`auth.test` and `chat.postMessage` as Slack answers them: JSON with an `ok` field,
`invalid_auth` / `not_authed` for a bad token, `channel_not_found` for an unknown
channel, HTTP 429 with Retry-After when told to rate-limit, HTTP 503 while "down".
It keeps every message it accepted. Control (no token): GET /_slack/messages,
POST /_slack/config {"rate_limit_next": n, "retry_after_s": s, "down": bool},
POST /_slack/reset.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from aiohttp import web


def build_app(token: str, channels: list[str]) -> web.Application:
    state: dict[str, Any] = {
        "messages": [],
        "rate_limit_next": 0,
        "retry_after_s": 1,
        "down": False,
    }
    app = web.Application()

    async def body_of(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return await request.json()
        return dict(await request.post())

    def refused(request: web.Request) -> web.Response | None:
        if state["down"]:
            return web.Response(status=503, text="service unavailable")
        if state["rate_limit_next"] > 0:
            state["rate_limit_next"] -= 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(state["retry_after_s"])},
            )
        auth = request.headers.get("Authorization", "")
        if not auth:
            return web.json_response({"ok": False, "error": "not_authed"})
        if auth != f"Bearer {token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return None

    async def auth_test(request: web.Request) -> web.Response:
        refusal = refused(request)
        if refusal is not None:
            return refusal
        return web.json_response(
            {
                "ok": True,
                "url": "https://local.slack.example/",
                "team": "local",
                "user": "cdn-bot",
                "team_id": "T0LOCAL",
                "user_id": "U0LOCAL",
                "bot_id": "B0LOCAL",
            }
        )

    async def post_message(request: web.Request) -> web.Response:
        refusal = refused(request)
        if refusal is not None:
            return refusal
        body = await body_of(request)
        channel = body.get("channel")
        if channel not in channels:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks"):
            return web.json_response({"ok": False, "error": "no_text"})
        blocks = body.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        ts = f"{time.time():.6f}"
        message = {"channel": channel, "text": body.get("text"), "blocks": blocks, "ts": ts}
        state["messages"].append(message)
        return web.json_response({"ok": True, "channel": channel, "ts": ts, "message": message})

    async def messages(_: web.Request) -> web.Response:
        return web.json_response(state["messages"])

    async def configure(request: web.Request) -> web.Response:
        changes = await request.json()
        state.update(
            {k: v for k, v in changes.items() if k in ("rate_limit_next", "retry_after_s", "down")}
        )
        return web.json_response({k: v for k, v in state.items() if k != "messages"})

    async def reset(_: web.Request) -> web.Response:
        state.update(messages=[], rate_limit_next=0, down=False)
        return web.json_response({"ok": True})

    app.router.add_post("/api/auth.test", auth_test)
    app.router.add_post("/api/chat.postMessage", post_message)
    app.router.add_get("/_slack/messages", messages)
    app.router.add_post("/_slack/config", configure)
    app.router.add_post("/_slack/reset", reset)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="local-slack-token")
    parser.add_argument("--channels", nargs="*", default=["#cdn-alerts"])
    args = parser.parse_args()
    app = build_app(args.token, args.channels)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=lambda *_: None)


if __name__ == "__main__":
    main()
