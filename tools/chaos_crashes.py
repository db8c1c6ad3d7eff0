"""`make chaos`'s process crashes, each at an exact point, and how Airflow recovered.

A task crash arms a hold at the BigQuery fault proxy. When the task's request arrives
there it waits; the process that sent it is found from the connection (its port in
/proc/net/tcp, the socket's inode under /proc/<pid>/fd) and must be an Airflow task
process (`airflow worker -- <task instance id>`). It is SIGKILLed, then the request is
released: forwarded (BigQuery runs a job whose client died) or dropped (the client died
before sending it). A job crash goes one level up: the proxy keeps the write job running
after its task is killed (tools/bigquery_held_jobs.py), as BigQuery does; the next writer
must cancel it before it writes. Once the killed task's retry has ended, whatever still
runs commits, so a missing cancel shows as duplicated rows. Killing only the task
process leaves its supervisor to report the failure (a task retry); killing the supervisor
too leaves nobody, so the scheduler's task instance heartbeat timeout fails the try.
Last, the scheduler is restarted during the catch-up. Runs in a thread beside the chaos
run's own loop.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import env
from tools.airflow_stack import AirflowStack
from tools.local_servers import BigQueryFaultProxy

TASK_PROCESS = "airflow worker -- "  # the task runner's process title, then its TI id
SUPERVISOR = "airflow worker -- LocalExecutor"  # the LocalExecutor worker supervising it
HEARTBEAT_TIMEOUT_S = 60  # [scheduler] task_instance_heartbeat_timeout for the chaos stack


@dataclass
class TaskCrash:
    label: str
    containing: str  # the held request: this text in its path or body
    method: str
    forward: bool  # send the held request on once its client is dead
    with_supervisor: bool  # kill the supervisor too: nobody reports the kill
    job_runs_on: bool = False  # the proxy keeps the task's job running after the kill
    task: dict[str, Any] = field(default_factory=dict)  # the killed task instance
    killed_at: datetime | None = None
    job: str = ""  # the job left running, and how it ended
    job_ended: str = ""


def task_crashes(raw_table: str) -> list[TaskCrash]:
    return [
        TaskCrash("SIGKILL fetch_shard while its staging load runs", "PARQUET", "POST",
                  forward=True, with_supervisor=False),
        TaskCrash("SIGKILL publish_window while its transaction runs",
                  f"INSERT INTO `{raw_table}`", "POST", forward=True, with_supervisor=False),
        TaskCrash("SIGKILL publish_window, its job running on in BigQuery past the retry",
                  f"INSERT INTO `{raw_table}`", "POST", forward=False, with_supervisor=False,
                  job_runs_on=True),
        TaskCrash("SIGKILL publish_window (and its supervisor) between commit and cleanup",
                  env.STAGING_TABLE_PREFIX, "DELETE", forward=False, with_supervisor=True),
    ]  # fmt: skip


class Crashes(threading.Thread):
    """The crashes, one after another; `restart_after` transform runs, the scheduler."""

    def __init__(
        self, airflow: AirflowStack, proxy: BigQueryFaultProxy, raw_table: str, restart_after: int
    ) -> None:
        super().__init__(name="chaos-crashes", daemon=True)
        self.airflow, self.proxy = airflow, proxy
        self.crashes = task_crashes(raw_table)
        self.restart_after = restart_after
        self.restart: dict[str, Any] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for crash in self.crashes:
                if crash.job_runs_on:
                    self._crash_job(crash)
                else:
                    self._crash_task(crash)
            self._wait(self._killed_tasks_left_running, "the killed tasks to be failed")
            self._end_jobs_left_running()
            self._wait(lambda: self._transforms_finished() >= self.restart_after, "the catch-up")
            self._restart_scheduler()
        except Exception as error:  # noqa: BLE001 - re-raised by check() in the main thread
            self.error = error

    def check(self) -> None:
        if self.error:
            raise RuntimeError("a chaos crash could not be carried out") from self.error

    @property
    def finished(self) -> bool:
        return bool(self.restart) or self.error is not None

    def _crash_task(self, crash: TaskCrash) -> None:
        self.proxy.hold(crash.containing, crash.method)
        self._wait(lambda: self.proxy.stats()["held"], f"a request for: {crash.label}")
        forward = True  # if the kill fails, the task goes on as if nothing happened
        try:
            self._kill(crash, self.proxy.stats()["held"]["client_port"])
            forward = crash.forward
        finally:
            self.proxy.release(forward=forward)

    def _crash_job(self, crash: TaskCrash) -> None:
        """Kill the task while it waits for its job; the job runs on in the proxy."""
        self.proxy.hold_job(crash.containing)
        for _ in range(5):  # the poll may end between the stats and the kill: look again
            self._wait(lambda: self._polled_job() is not None, f"a job for: {crash.label}")
            crash.job, port = self._polled_job() or ("", 0)
            try:
                self._kill(crash, port)
                return
            except RuntimeError as error:
                if "hold the connection" not in str(error):
                    raise
        raise RuntimeError(f"could not find the process polling {crash.job}")

    def _polled_job(self) -> tuple[str, int] | None:
        """The held job still running and a port its caller polls it on."""
        for job_id, job in self.proxy.stats()["held_jobs"].items():
            if not job["ended"] and job["client_port"]:
                return job_id, job["client_port"]
        return None

    def _end_jobs_left_running(self) -> None:
        """Once each killed try's retry has ended, what still runs commits: BigQuery
        would have run it to its end, beside the retry's write."""
        for crash in self.crashes:
            if crash.job_runs_on:
                self._wait(lambda c=crash: self._retried(c), f"the retry of: {crash.label}")
        self.proxy.finish_held_jobs()
        held = self.proxy.stats()["held_jobs"]
        for crash in self.crashes:
            if crash.job_runs_on:
                crash.job_ended = held[crash.job]["ended"]

    def _retried(self, crash: TaskCrash) -> bool:
        last = self._tries(crash)[-1]
        return last["try_number"] > crash.task["try_number"] and last["state"] in (
            "success", "failed")  # fmt: skip

    def _kill(self, crash: TaskCrash, client_port: int) -> None:
        pid = connected_process(client_port, urlsplit(self.proxy.url).port)
        ti_id = _title(pid).removeprefix(TASK_PROCESS)
        if not _title(pid).startswith(TASK_PROCESS) or ti_id.startswith("LocalExecutor"):
            raise RuntimeError(f"the held request came from {_title(pid)!r}, not a task")
        crash.task = self._running_task_instance(ti_id)
        victims = [pid]
        if crash.with_supervisor:
            supervisor = _parent(pid)
            if not _title(supervisor).startswith(SUPERVISOR):
                raise RuntimeError(f"the task's parent is {_title(supervisor)!r}")
            victims.insert(0, supervisor)  # first, so it cannot report the task's death
        for victim in victims:
            os.kill(victim, signal.SIGKILL)
        crash.killed_at = datetime.now(UTC)

    def _running_task_instance(self, ti_id: str) -> dict[str, Any]:
        for run in self.airflow.runs(env.INGEST_DAG_ID):
            if run["state"] == "running":
                for ti in self.airflow.task_instances(env.INGEST_DAG_ID, run["dag_run_id"]):
                    if ti["id"] == ti_id:
                        return ti
        raise RuntimeError(f"no running task instance has the id {ti_id}")

    def _killed_tasks_left_running(self) -> bool:
        """The scheduler restart waits until no killed try is still `running`."""
        return not any(self._killed_try(c).get("state") == "running" for c in self.crashes)

    def _killed_try(self, crash: TaskCrash) -> dict[str, Any]:
        """The try that was killed ({} while Airflow moves it to the history table)."""
        number = crash.task["try_number"]
        return next((t for t in self._tries(crash) if t["try_number"] == number), {})

    def _tries(self, crash: TaskCrash) -> list[dict[str, Any]]:
        ti = crash.task
        path = (f"dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/"
                f"{ti['task_id']}/tries?map_index={ti['map_index']}")  # fmt: skip
        tries = self.airflow.api("GET", path)["task_instances"]
        return sorted(tries, key=lambda t: t["try_number"])

    def _transforms_finished(self) -> int:
        runs = self.airflow.runs(env.TRANSFORM_DAG_ID)
        return sum(r["state"] in ("success", "failed") for r in runs)

    def _restart_scheduler(self) -> None:
        before = self._transforms_finished()
        started = time.monotonic()
        self.airflow.restart("scheduler")
        self._wait(self._scheduler_healthy, "the new scheduler's heartbeat")
        self.restart = {"transforms_before": before, "down_s": time.monotonic() - started}

    def _scheduler_healthy(self) -> bool:
        health = self.airflow.api("GET", "monitor/health")
        return health["scheduler"]["status"] == "healthy"

    def _wait(self, ready, what: str, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            time.sleep(0.2)

    def all_recovered(self) -> bool:
        """Every killed task instance ended in success, each the expected way (a heartbeat
        timeout exactly where nobody was left to report the death), and the scheduler came
        back."""
        return bool(self.restart) and all(
            c.task
            and self._tries(c)[-1]["state"] == "success"
            and self._timed_out(c) == c.with_supervisor
            and c.job_ended == ("cancelled" if c.job_runs_on else "")
            for c in self.crashes
        )

    def recoveries(self) -> dict[str, str]:
        """For the chaos table: each crash and how Airflow recovered from it."""
        lines = {}
        for crash in self.crashes:
            lines[f"crash: {crash.label}"] = self._recovery(crash)
        restart = self.restart
        if restart:
            finished = self._transforms_finished()
            lines["crash: scheduler restart during the catch-up"] = (
                f"SIGTERM after {restart['transforms_before']} transform runs, new scheduler "
                f"healthy in {restart['down_s']:.0f} s; {finished - restart['transforms_before']}"
                " transform runs finished after it"
            )
        return lines

    def _timed_out(self, crash: TaskCrash) -> bool:
        """Whether the scheduler failed the killed try for a heartbeat timeout (event log)."""
        ti = crash.task
        # Encoded: a run id's "+00:00" would read as a space in a query string.
        query = urlencode(
            {
                "dag_id": ti["dag_id"],
                "run_id": ti["dag_run_id"],
                "task_id": ti["task_id"],
                "map_index": ti["map_index"],
                "try_number": ti["try_number"],
                "event": "heartbeat timeout",
            }
        )
        return self.airflow.api("GET", f"eventLogs?{query}")["total_entries"] > 0

    def _recovery(self, crash: TaskCrash) -> str:
        ti = crash.task
        if not ti:
            return "not carried out"
        tries = self._tries(crash)
        killed = self._killed_try(crash)
        how = "heartbeat timeout, then task retry" if self._timed_out(crash) else "task retry"
        retried = [t for t in tries if t["try_number"] > killed["try_number"]]
        after = ""
        if retried and retried[0]["start_date"] and crash.killed_at:
            delay = datetime.fromisoformat(retried[0]["start_date"]) - crash.killed_at
            after = f", try {retried[0]['try_number']} started {delay.total_seconds():.0f} s later"
        shard = f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""
        job = f", the job it left running {crash.job_ended or 'not ended'}" if crash.job else ""
        return (
            f"{how}: try {crash.task['try_number']} {killed.get('state')}{after}{job}, "
            f"final {tries[-1]['state']} ({ti['task_id']}{shard} of {ti['dag_run_id']})"
        )


def connected_process(port: int, to_port: int) -> int:
    """The process whose TCP connection goes from local `port` to `to_port`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        ports = (int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16))
        if ports == (port, to_port):
            inodes.add(fields[9])
    owners = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                    owners.add(int(fd_dir.parent.name))
        except OSError:  # the process ended, or is not ours to look at
            continue
    if len(owners) != 1:
        raise RuntimeError(f"{len(owners)} processes hold the connection from port {port}")
    return owners.pop()


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])
