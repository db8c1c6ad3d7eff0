"""A local stand-in for the Slack Web API methods the project calls.

`auth.test`, `chat.postMessage`, `conversations.info` and `conversations.list` as Slack
answers them: JSON with an `ok` field, an `x-oauth-scopes` header with the token's
scopes on every answer to a valid token, and Slack's refusals: `invalid_auth` /
`not_authed` for a bad token, `missing_scope` (with `needed` and `provided`) for a method
the scopes do not allow, `channel_not_found` for an unknown channel or a private one the
app is not in, `not_in_channel` for a public channel the app has not joined (unless the
token has chat:write.public), `is_archived` for an archived one. conversations.info takes
channel IDs only, as Slack's does. Faults: HTTP 429 with Retry-After when told to
rate-limit, 503 while "down", and 502/504 from Slack's edge, either the next ones listed
or at a rate. It keeps every message it accepted.

Control (no token): GET /_slack/messages; POST /_slack/config {"rate_limit_next": n,
"retry_after_s": s, "down": bool, "scopes": [...], "server_errors_next": [502, 504],
"server_error_rate": 0.1}; POST /_slack/channels {"name": "#x", "is_member": bool,
"is_archived": bool, "is_private": bool} adds or changes a channel; POST /_slack/reset.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from aiohttp import web

SCOPES = ("chat:write", "channels:read", "groups:read")  # what the runbook asks for
CONFIG_KEYS = (
    "rate_limit_next",
    "retry_after_s",
    "down",
    "scopes",
    "server_errors_next",
    "server_error_rate",
)
EDGE_ERRORS = (502, 504)


def build_app(token: str, channels: list[str]) -> web.Application:
    """The stand-in; the app is a member of each of `channels` (names with #)."""
    state: dict[str, Any] = {}
    app = web.Application()

    def reset() -> None:
        state.update(
            messages=[],
            rate_limit_next=0,
            retry_after_s=1,
            down=False,
            scopes=list(SCOPES),
            server_errors_next=[],
            server_error_rate=0.0,
            channels={},
        )
        for name in channels:
            set_channel({"name": name, "is_member": True})

    def set_channel(change: dict[str, Any]) -> dict[str, Any]:
        name = change["name"].removeprefix("#")
        number = len(state["channels"]) + 1
        found = state["channels"].setdefault(
            name,
            {"id": f"C{number:08d}", "name": name, "is_channel": True, "is_group": False,
             "is_im": False, "is_private": False, "is_archived": False, "is_member": False,
             "created": 1700000000},
        )  # fmt: skip
        flags = ("is_member", "is_archived", "is_private")
        found.update({k: bool(change[k]) for k in flags if k in change})
        return found

    async def body_of(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return await request.json()
        return dict(await request.post())

    def answer(body: dict[str, Any]) -> web.Response:
        return web.json_response(body, headers={"x-oauth-scopes": ",".join(state["scopes"])})

    def refused(request: web.Request, needed: str | None = None) -> web.Response | None:
        if state["down"]:
            return web.Response(status=503, text="service unavailable")
        if state["server_errors_next"]:
            return web.Response(status=state["server_errors_next"].pop(0), text="edge error")
        if random.random() < state["server_error_rate"]:
            return web.Response(status=random.choice(EDGE_ERRORS), text="edge error")
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
        if needed and not set(needed.split(",")) & set(state["scopes"]):
            return missing_scope(needed)
        return None

    def missing_scope(needed: str) -> web.Response:
        provided = ",".join(state["scopes"])
        return answer({"ok": False, "error": "missing_scope", "needed": needed,
                       "provided": provided})  # fmt: skip

    def channel_of(reference: str | None) -> dict[str, Any] | None:
        """By name (#name or name) or ID, as chat.postMessage takes it; a private channel
        the app is not in does not exist for it."""
        reference = (reference or "").removeprefix("#")
        found = state["channels"].get(reference) or next(
            (c for c in state["channels"].values() if c["id"] == reference), None
        )
        if found is None or (found["is_private"] and not found["is_member"]):
            return None
        return found

    async def auth_test(request: web.Request) -> web.Response:
        refusal = refused(request)
        if refusal is not None:
            return refusal
        return answer(
            {
                "ok": True,
                "url": "https://local.slack.example/",
                "team": "local",
                "user": "cdn-bot",
                "team_id": "T0LOCAL",
                "user_id": "U0LOCAL",
                "bot_id": "B0LOCAL",
                "is_enterprise_install": False,
            }
        )

    async def post_message(request: web.Request) -> web.Response:
        refusal = refused(request, needed="chat:write")
        if refusal is not None:
            return refusal
        body = await body_of(request)
        channel = channel_of(body.get("channel"))
        if channel is None:
            return answer({"ok": False, "error": "channel_not_found"})
        if channel["is_archived"]:
            return answer({"ok": False, "error": "is_archived"})
        if not channel["is_member"] and "chat:write.public" not in state["scopes"]:
            return answer({"ok": False, "error": "not_in_channel"})
        if not body.get("text") and not body.get("blocks"):
            return answer({"ok": False, "error": "no_text"})
        blocks = body.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        ts = f"{time.time():.6f}"
        message = {"channel": body.get("channel"), "text": body.get("text"), "blocks": blocks,
                   "ts": ts}  # fmt: skip
        state["messages"].append(message)
        return answer({"ok": True, "channel": channel["id"], "ts": ts, "message": message})

    async def conversations_info(request: web.Request) -> web.Response:
        refusal = refused(request, needed="channels:read,groups:read")
        if refusal is not None:
            return refusal
        reference = (await body_of(request)).get("channel") or request.query.get("channel")
        found = next((c for c in state["channels"].values() if c["id"] == reference), None)
        if found is None or (found["is_private"] and not found["is_member"]):
            return answer({"ok": False, "error": "channel_not_found"})
        if not _can_read(found, state["scopes"]):
            return missing_scope("groups:read" if found["is_private"] else "channels:read")
        return answer({"ok": True, "channel": found})

    async def conversations_list(request: web.Request) -> web.Response:
        refusal = refused(request)
        if refusal is not None:
            return refusal
        query = {**request.query, **(await body_of(request))}
        types = str(query.get("types") or "public_channel").split(",")
        needed = {"public_channel": "channels:read", "private_channel": "groups:read"}
        for kind in types:
            if kind in needed and needed[kind] not in state["scopes"]:
                return missing_scope(needed[kind])
        listed = [
            c
            for c in state["channels"].values()
            if ("private_channel" if c["is_private"] else "public_channel") in types
            and (c["is_member"] or not c["is_private"])
            and not (query.get("exclude_archived") in ("true", True) and c["is_archived"])
        ]
        start, limit = int(query.get("cursor") or 0), int(query.get("limit") or 100)
        following = str(start + limit) if start + limit < len(listed) else ""
        return answer(
            {"ok": True, "channels": listed[start : start + limit],
             "response_metadata": {"next_cursor": following}}
        )  # fmt: skip

    async def messages(_: web.Request) -> web.Response:
        return web.json_response(state["messages"])

    async def configure(request: web.Request) -> web.Response:
        changes = await request.json()
        state.update({k: v for k, v in changes.items() if k in CONFIG_KEYS})
        return web.json_response({k: state[k] for k in CONFIG_KEYS})

    async def channel(request: web.Request) -> web.Response:
        return web.json_response(set_channel(await request.json()))

    async def reset_all(_: web.Request) -> web.Response:
        reset()
        return web.json_response({"ok": True})

    reset()
    app.router.add_post("/api/auth.test", auth_test)
    app.router.add_post("/api/chat.postMessage", post_message)
    app.router.add_route("*", "/api/conversations.info", conversations_info)
    app.router.add_route("*", "/api/conversations.list", conversations_list)
    app.router.add_get("/_slack/messages", messages)
    app.router.add_post("/_slack/config", configure)
    app.router.add_post("/_slack/channels", channel)
    app.router.add_post("/_slack/reset", reset_all)
    return app


def _can_read(channel: dict[str, Any], scopes: list[str]) -> bool:
    return ("groups:read" if channel["is_private"] else "channels:read") in scopes


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
