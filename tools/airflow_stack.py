"""A real Airflow 3 on 127.0.0.1: api-server, scheduler, dag-processor (and triggerer).

Used where Airflow's own scheduling is what is tested (pools across parallel runs, the
paused-DAG check) and by `make demo`, `make chaos` and `make bench-scale`. LocalExecutor
with small parallelism; the metadata DB is a PostgreSQL database (tools/postgres.py), as
on Composer: never SQLite, whose single writer lock fails concurrent writers after 5 s.
The scheduler and triggerer run with --skip-serve-logs, since their log servers bind every
interface; the api-server reads task logs from the shared log folder instead.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode

import requests

from tools.local_servers import REPO, free_port
from tools.postgres import airflow_database_settings

USER, PASSWORD = "admin", "admin"
TERMINAL = {"success", "failed"}
# Airflow fails a reschedule-mode sensor whose previous poke's executor event arrives after
# its next poke was queued ("finished with state success, but the task instance's state
# attribute is queued"; apache/airflow#71172, fix open in #71194). A task's supervisor
# notices the task's exit up to [workers] min_heartbeat_interval (5 s) late, so pokes
# closer than this fail the sensors by chance. The bundle's defaults are 30 s.
MIN_POKE_S = 10


def catchup_start(minutes: int) -> datetime:
    """A `CDN_START_DATE` for a catch-up of `minutes` up to the current 5-minute boundary
    (the default schedule's): `catchup_start(60)` gives the last hour's 12 windows."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=now.minute % 5 + minutes)


class AirflowStack:
    def __init__(
        self,
        home: Path,
        env: dict[str, str] | None = None,
        *,
        database: str,
        parallelism: int = 4,
        triggerer: bool = False,
        port: int = 0,
    ) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home.mkdir(parents=True, exist_ok=True)
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({USER: PASSWORD}))
        self.env = {
            **os.environ,
            # Each poke of a reschedule sensor starts a task process: the missing-pool watch
            # pokes every 10 s on a local stack, unless the caller's settings say otherwise.
            "CDN_POOL_POKE_S": "10",
            "AIRFLOW_HOME": str(home),
            # The repository root plays the bucket's dags/ folder, which Composer puts on
            # sys.path: `import env` and `import dag_utils` work the same way.
            "PYTHONPATH": str(REPO),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",  # a test session's own Airflow runs in it
            **airflow_database_settings(database),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
            "AIRFLOW__API__SECRET_KEY": self._secret("api"),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            **(env or {}),
        }
        too_fast = [
            k for k, v in self.env.items() if k.endswith("_POKE_S") and float(v) < MIN_POKE_S
        ]
        if too_fast:
            raise ValueError(f"{too_fast} under {MIN_POKE_S} s: see MIN_POKE_S")
        self.commands = [
            ["api-server", "--host", "127.0.0.1", "--port", str(self.port)],
            ["scheduler", "--skip-serve-logs"],
            ["dag-processor"],
        ]
        if triggerer:
            self.commands.append(["triggerer", "--skip-serve-logs"])
        self.procs: list[subprocess.Popen] = []
        self._token: str | None = None

    def _secret(self, name: str) -> str:
        """Stable across restarts of the same home, so `make demo` can be run twice."""
        path = self.home / f".{name}-secret"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
        return path.read_text()

    def airflow(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )

    def start(self, timeout: float = 180) -> Self:
        self.airflow("db", "migrate")
        self.procs = [self._spawn(command) for command in self.commands]
        self._wait(lambda: requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).ok, timeout)
        return self

    def _spawn(self, command: list[str]) -> subprocess.Popen:
        logs = self.home / "service-logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{command[0]}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "airflow", *command],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() ends each service with its children
            )

    def restart(self, service: str, grace: float = 120) -> None:
        """Restart one service as a process manager does: SIGTERM to it, its group killed
        if it is still there after `grace` seconds, then a new one."""
        index = next(i for i, command in enumerate(self.commands) if command[0] == service)
        proc = self.procs[index]
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs[index] = self._spawn(self.commands[index])

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the REST API (v2), as the UI uses it

    def api(self, method: str, path: str, **body: Any) -> Any:
        if self._token is None:
            answer = requests.post(
                f"{self.url}/auth/token", json={"username": USER, "password": PASSWORD}, timeout=10
            )
            answer.raise_for_status()
            self._token = answer.json()["access_token"]
        answer = requests.request(
            method,
            f"{self.url}/api/v2/{path}",
            json=body or None,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def provision(self, dry_run: bool = False) -> str:
        """`make provision` against this Airflow, in this stack's environment: the bundle's
        pools, its connections checked. Its report; missing connections are in it."""
        done = subprocess.run(
            [sys.executable, "-m", "tools.provision", "--airflow-url", self.url]
            + (["--dry-run"] if dry_run else []),
            env=self.env | {"AIRFLOW_USER": USER, "AIRFLOW_PASSWORD": PASSWORD},
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode not in (0, 1):  # 1: a connection does not resolve (reported)
            raise RuntimeError(f"make provision failed: {done.stderr[-2000:]}")
        return done.stdout

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        def parsed() -> bool:
            try:
                self.api("GET", f"dags/{dag_id}")
                return True
            except requests.HTTPError:
                return False

        self._wait(parsed, timeout)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.api("PATCH", f"dags/{dag_id}", is_paused=paused)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        found = self.api("GET", f"dags/{dag_id}/dagRuns?limit=500&order_by=logical_date")
        return found["dag_runs"]

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 600) -> list[dict[str, Any]]:
        """Wait until at least `count` runs exist and every run has finished."""

        def finished() -> bool:
            runs = self.runs(dag_id)
            return len(runs) >= count and all(r["state"] in TERMINAL for r in runs)

        self._wait(finished, timeout, poll=2)
        return self.runs(dag_id)

    def tasks_ended_unreported(self) -> list[str]:
        """Task tries the executor saw end while their state said otherwise ("state
        mismatch" in the event log): a killed task, or the sensor race of MIN_POKE_S. A
        stack whose tasks all ran to their own end has none."""
        logs = self.api("GET", "eventLogs?" + urlencode({"event": "state mismatch"}))
        return [f"{e['dag_id']}.{e['task_id']} {e['run_id']}" for e in logs["event_logs"]]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def _wait(self, ready, timeout: float, poll: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, command in zip(self.procs, self.commands, strict=False):
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {command[0]} exited; see {self.home}/service-logs")
            try:
                if ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(poll)
        raise TimeoutError(f"Airflow was not ready in {timeout} s; see {self.home}/service-logs")
