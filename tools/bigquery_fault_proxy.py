"""A pass-through HTTP proxy in front of a BigQuery endpoint that fails chosen jobs.

Tests and the chaos run use it to make one BigQuery job fail mid-run without any hook
in the product's code: POST /_proxy/fail {"containing": "MERGE", "times": 1} makes
the next job request whose body contains that text answer HTTP 400, as BigQuery does
for a job it rejects. POST /_proxy/refuse {"dataset_creation": true} answers every dataset
creation with HTTP 403, as BigQuery does for a service account without
bigquery.datasets.create (e.g. one with only roles/bigquery.dataEditor on the dataset).
GET /_proxy/stats counts requests, injected failures and refusals.

The chaos run's crashes use holds: POST /_proxy/hold {"containing": "PARQUET", "method":
"POST"} keeps the next request whose path or body contains that text waiting; stats then
show it under "held" with the client's port, so the process that sent it can be found
and killed at exactly that point. POST /_proxy/release {"forward": true} then sends it
on (BigQuery runs a job whose client died) or, with false, drops it (the client died
before sending it).

A held job is one level up: POST /_proxy/hold_job {"containing": "INSERT INTO"} makes the
next job whose body contains the text go on running after its caller is gone, until a
jobs.cancel rolls it back or POST /_proxy/finish_held_jobs commits it (see
tools/bigquery_held_jobs.py); stats list them under "held_jobs". Every job's labels are
checked as BigQuery checks them: a job with a label it would refuse answers HTTP 400.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import ClientSession, web

from tools.bigquery_held_jobs import HeldJobs

INJECTED_ERROR = {
    "code": 400,
    "message": "injected failure",
    "status": "INVALID_ARGUMENT",
    "errors": [{"reason": "invalidQuery", "message": "injected failure"}],
}
REFUSED_CREATION = {
    "code": 403,
    "message": "Access Denied: User does not have bigquery.datasets.create permission.",
    "status": "PERMISSION_DENIED",
    "errors": [{"reason": "accessDenied", "message": "Access Denied"}],
}
MAX_LABEL_CHARS = 63
MAX_LABELS = 64


def refused_labels(body: bytes) -> str | None:
    """Why BigQuery would refuse the job's labels (Labels requirements); None if it would not.

    Keys and values: at most 63 characters, lowercase letters, digits, _ and -
    (international characters allowed); a key starts with a letter; values may be empty.
    """
    try:
        job = json.loads(body or b"{}")
    except ValueError:
        return None
    labels = (job.get("configuration") or {}).get("labels") or job.get("labels") or {}
    if len(labels) > MAX_LABELS:
        return f"a job may have at most {MAX_LABELS} labels"
    for key, value in labels.items():
        for text in (key, value or ""):
            allowed = all(c in "_-" or c.isdigit() or (c.isalpha() and c == c.lower())
                          for c in text)  # fmt: skip
            if len(text) > MAX_LABEL_CHARS or not allowed:
                return f"Label {key!r}: {text!r} is not a valid label key or value"
        if not key or not (key[0].isalpha() and key[0] == key[0].lower()):
            return f"Label key {key!r} must start with a lowercase letter"
    return None


HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


def build_app(upstream: str) -> web.Application:
    state = {"containing": "", "times": 0, "failed": 0, "requests": 0, "held": None,
             "refuse_dataset_creation": False, "refused": 0}  # fmt: skip
    app = web.Application(client_max_size=1024**3)
    holds: dict = {"armed": None, "release": None}
    held_jobs = HeldJobs(upstream)

    async def fail(request: web.Request) -> web.Response:
        body = await request.json()
        state.update(containing=str(body["containing"]), times=int(body.get("times", 1)))
        return web.json_response(state)

    async def refuse(request: web.Request) -> web.Response:
        body = await request.json()
        state["refuse_dataset_creation"] = bool(body.get("dataset_creation", False))
        return web.json_response(state)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(state | {"held_jobs": held_jobs.stats()})

    async def hold_job(request: web.Request) -> web.Response:
        held_jobs.armed = str((await request.json())["containing"])
        return web.json_response({"held_jobs": held_jobs.stats()})

    async def finish_held_jobs(_: web.Request) -> web.Response:
        return web.json_response({"committed": await held_jobs.finish()})

    async def hold(request: web.Request) -> web.Response:
        body = await request.json()
        holds["armed"] = {"containing": str(body["containing"]), "method": body.get("method")}
        return web.json_response(state)

    async def release(request: web.Request) -> web.Response:
        body = await request.json()
        if holds["release"] is None or holds["release"].done():
            raise web.HTTPConflict(text="nothing is held")
        holds["release"].set_result(bool(body.get("forward", True)))
        return web.json_response(state)

    def to_hold(request: web.Request, body: bytes) -> bool:
        armed = holds["armed"]
        if armed is None or armed["method"] not in (None, request.method):
            return False
        return armed["containing"].encode() in request.path_qs.encode() + body

    async def held(request: web.Request) -> bool:
        """Wait for the release; whether to forward the request."""
        holds["armed"] = None
        holds["release"] = asyncio.get_running_loop().create_future()
        _, port = request.transport.get_extra_info("peername")[:2]
        state["held"] = {"method": request.method, "path": request.path, "client_port": port}
        try:
            return await holds["release"]
        finally:
            state["held"] = None

    async def forward(request: web.Request) -> web.Response:
        state["requests"] += 1
        body = await request.read()
        creates_dataset = request.method == "POST" and request.path.endswith("/datasets")
        if creates_dataset and state["refuse_dataset_creation"]:
            state["refused"] += 1
            return web.json_response({"error": REFUSED_CREATION}, status=403)
        is_job = request.method == "POST" and (
            "/jobs" in request.path or "/queries" in request.path
        )
        if is_job and state["times"] > 0 and state["containing"].encode() in body:
            state["times"] -= 1
            state["failed"] += 1
            return web.json_response({"error": INJECTED_ERROR}, status=400)
        if is_job and (refusal := refused_labels(body)):
            error = {"code": 400, "message": refusal, "status": "INVALID_ARGUMENT",
                     "errors": [{"reason": "invalid", "message": refusal}]}  # fmt: skip
            return web.json_response({"error": error}, status=400)
        if held_jobs.takes(request, body):
            return await held_jobs.start(request)
        if (answer := await held_jobs.answer(request)) is not None:
            return answer
        if to_hold(request, body) and not await held(request):
            return web.json_response({"error": INJECTED_ERROR}, status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with app["session"].request(
            request.method, upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            payload = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=answer.status, body=payload, headers=out)

    async def session(app: web.Application):
        app["session"] = held_jobs.session = ClientSession(auto_decompress=True)
        yield
        await app["session"].close()

    app.cleanup_ctx.append(session)
    app.router.add_post("/_proxy/fail", fail)
    app.router.add_post("/_proxy/refuse", refuse)
    app.router.add_get("/_proxy/stats", stats)
    app.router.add_post("/_proxy/hold", hold)
    app.router.add_post("/_proxy/release", release)
    app.router.add_post("/_proxy/hold_job", hold_job)
    app.router.add_post("/_proxy/finish_held_jobs", finish_held_jobs)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:9050")
    args = parser.parse_args()
    web.run_app(build_app(args.upstream.rstrip("/")), host="127.0.0.1", port=args.port,
                access_log=None, print=lambda *_: None)  # fmt: skip


if __name__ == "__main__":
    main()
