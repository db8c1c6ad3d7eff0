"""The fault proxy's held jobs: a write job that goes on running in BigQuery after its
caller is gone, as a job does when its task is SIGKILLed.

Armed with a text, the proxy takes the next jobs.insert whose body contains it (a script
ending in COMMIT TRANSACTION) and runs the script in an emulator session without its
COMMIT: the transaction has read its snapshot and made its changes, uncommitted. The
caller gets the job back RUNNING and sees it running in jobs.get, jobs.getQueryResults
and jobs.list (which, as in BigQuery, filters by state and creation time, not by label).
jobs.cancel rolls the transaction back: the job ends DONE with BigQuery's "stopped" error,
seen from the next jobs.get on (BigQuery's cancel returns before the job has ended).
Nothing cancels it: `finish` commits it later, beside whatever committed meanwhile, as
BigQuery commits two transactions that only append.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

STOPPED = {
    "reason": "stopped",
    "message": "Job execution was cancelled: User requested cancellation",
}
COMMIT = "COMMIT TRANSACTION"
INTERNAL_PREFIX = "proxy_held_"  # the proxy's own emulator jobs, hidden from jobs.list
MAX_POLL_S = 10.0  # BigQuery answers getQueryResults within its timeoutMs (10 s default)


class HeldJobStepFailed(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error


@dataclass
class HeldJob:
    resource: dict[str, Any]
    session_id: str
    ended: str = ""  # "", "cancelled", "committed" or "failed at commit"
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    poll_port: int | None = None  # the caller's port while a getQueryResults poll waits

    @property
    def job_id(self) -> str:
        return self.resource["jobReference"]["jobId"]

    def view(self, state: str | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {"state": state or ("DONE" if self.ended else "RUNNING")}
        error = STOPPED if self.ended == "cancelled" else self.resource.get("failure")
        if status["state"] == "DONE" and error:
            status |= {"errorResult": error, "errors": [error]}
        return {k: v for k, v in self.resource.items() if k != "failure"} | {"status": status}


class HeldJobs:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.armed: str | None = None
        self.jobs: dict[str, HeldJob] = {}
        self.session: ClientSession | None = None

    def stats(self) -> dict[str, Any]:
        return {
            job_id: {
                "ended": job.ended,
                "error": job.view()["status"].get("errorResult"),
                "client_port": job.poll_port,
                "labels": job.resource["configuration"].get("labels", {}),
            }
            for job_id, job in self.jobs.items()
        }

    def takes(self, request: web.Request, body: bytes) -> bool:
        return (
            self.armed is not None
            and request.method == "POST"
            and request.path.endswith("/jobs")
            and self.armed.encode() in body
        )

    async def start(self, request: web.Request) -> web.Response:
        """Run the job's script but its COMMIT in a session; answer the job RUNNING."""
        self.armed = None
        job = await request.json()
        project = request.path.split("/")[4]  # /bigquery/v2/projects/<project>/jobs
        query = dict(job["configuration"]["query"])
        script, commit, _ = query["query"].rpartition(COMMIT)
        if not commit:
            raise web.HTTPBadRequest(
                text="a held job must be a script ending in COMMIT TRANSACTION"
            )
        try:
            started = await self._run(project, script, query | {"createSession": True})
        except HeldJobStepFailed as failed:
            raise web.HTTPBadGateway(text=f"a held job's script failed: {failed}") from failed
        reference = {"projectId": project, "location": "US"} | job.get("jobReference", {})
        reference.setdefault("jobId", str(uuid.uuid4()))
        now = str(int(time.time() * 1000))
        held = HeldJob(
            resource={
                "kind": "bigquery#job",
                "id": f"{project}:{reference['location']}.{reference['jobId']}",
                "jobReference": reference,
                "configuration": job["configuration"] | {"jobType": "QUERY"},
                "statistics": {"creationTime": now, "startTime": now},
                "user_email": "local-bigquery@localhost",
            },
            session_id=started["statistics"]["sessionInfo"]["sessionId"],
        )
        self.jobs[held.job_id] = held
        return web.json_response(held.view())

    async def answer(self, request: web.Request) -> web.Response | None:
        """The answer to a request about held jobs; None for any other request."""
        parts = request.path.split("/")  # '', bigquery, v2, projects, <p>, jobs|queries, ...
        if len(parts) < 6 or parts[3] != "projects":
            return None
        kind, rest = parts[5], parts[6:]
        if kind == "jobs" and not rest and request.method == "GET":
            return await self._list(request)
        held = self.jobs.get(rest[0]) if rest else None
        if held is None:
            return None
        if kind == "queries" and request.method == "GET":
            return await self._poll(request, held)
        if kind == "jobs" and rest[1:] == ["cancel"] and request.method == "POST":
            was_running = not held.ended
            await self._end(held, "cancelled")
            state = "RUNNING" if was_running else "DONE"  # it ends after cancel returns
            return web.json_response(
                {"kind": "bigquery#jobCancelResponse", "job": held.view(state)}
            )
        if kind == "jobs" and len(rest) == 1 and request.method == "GET":
            return web.json_response(held.view())
        return None

    async def finish(self) -> list[str]:
        """Commit every held job still running (nothing cancelled it); those committed."""
        running = [job for job in self.jobs.values() if not job.ended]
        for job in running:
            await self._end(job, "committed")
        return [job.job_id for job in running if job.ended == "committed"]

    async def _poll(self, request: web.Request, held: HeldJob) -> web.Response:
        if not held.ended:
            wait = min(float(request.query.get("timeoutMs", 10_000)) / 1000, MAX_POLL_S)
            held.poll_port = request.transport.get_extra_info("peername")[1]
            try:
                await asyncio.wait_for(held.changed.wait(), wait)
            except TimeoutError:
                pass
            finally:
                held.poll_port = None
        reference = held.resource["jobReference"]
        if error := held.view()["status"].get("errorResult"):
            answer = {"code": 400, "message": error["message"], "errors": [error]}
            return web.json_response({"error": answer}, status=400)
        return web.json_response(
            {"kind": "bigquery#getQueryResultsResponse", "jobReference": reference,
             "jobComplete": bool(held.ended), "totalRows": "0", "schema": {"fields": []}}
        )  # fmt: skip

    async def _list(self, request: web.Request) -> web.Response:
        """The emulator's list, less the proxy's own jobs, with the held jobs that match."""
        async with self._session().get(self.upstream + request.path_qs) as answer:
            listing = await answer.json()
        jobs = [
            job for job in listing.get("jobs", [])
            if not job["jobReference"]["jobId"].startswith(INTERNAL_PREFIX)
        ]  # fmt: skip
        states = {s.upper() for s in request.query.getall("stateFilter", [])}
        since = int(request.query.get("minCreationTime", 0))
        for held in self.jobs.values():
            view = held.view()
            if (states and view["status"]["state"] not in states) or int(
                view["statistics"]["creationTime"]
            ) < since:
                continue
            if request.query.get("projection") != "full":
                view = {k: v for k, v in view.items() if k != "configuration"}
            jobs.insert(0, view | {"state": view["status"]["state"]})
        return web.json_response(listing | {"jobs": jobs})

    async def _end(self, held: HeldJob, how: str) -> None:
        if held.ended:
            return
        project = held.resource["jobReference"]["projectId"]
        session = [{"key": "session_id", "value": held.session_id}]
        verb = "COMMIT" if how == "committed" else "ROLLBACK"
        try:
            await self._run(project, f"{verb} TRANSACTION", {"connectionProperties": session})
        except HeldJobStepFailed as failed:  # e.g. a concurrent update: BigQuery aborts it
            held.resource["failure"] = failed.error
            how = "failed at commit"
        await self._run(project, "CALL BQ.ABORT_SESSION()", {"connectionProperties": session})
        held.ended = how
        held.changed.set()

    async def _run(self, project: str, sql: str, query: dict[str, Any]) -> dict[str, Any]:
        """Run a query job of the proxy's own in the emulator, to its end."""
        job_id = f"{INTERNAL_PREFIX}{uuid.uuid4().hex}"
        body = {
            "jobReference": {"projectId": project, "jobId": job_id},
            "configuration": {"query": query | {"query": sql, "useLegacySql": False}},
        }
        base = f"{self.upstream}/bigquery/v2/projects/{project}/jobs"
        async with self._session().post(base, json=body) as answer:
            job = await answer.json()
            if answer.status != 200:
                raise web.HTTPBadGateway(text=f"the emulator refused a held job's step: {job}")
        while job["status"]["state"] != "DONE":
            await asyncio.sleep(0.05)
            async with self._session().get(f"{base}/{job_id}") as answer:
                job = await answer.json()
        if error := job["status"].get("errorResult"):
            raise HeldJobStepFailed(error)
        return job

    def _session(self) -> ClientSession:
        if self.session is None:
            raise RuntimeError("the proxy's HTTP session is not open")
        return self.session
