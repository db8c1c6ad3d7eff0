"""Start and stop the local stand-ins as child processes on 127.0.0.1.

Used by the test fixtures, the benchmark and `make demo`, so each server is started
one way everywhere. Each writes its output to a log file under .local/logs/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import requests

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / ".local"
LOGS = LOCAL / "logs"
BQ_EMULATOR = LOCAL / "bq-emulator" / "bin" / "local-bigquery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A child process serving HTTP on `url`, ready once `ready_path` answers."""

    def __init__(
        self, name: str, args: list[str], url: str, ready_path: str = "/", env: dict | None = None
    ) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.log_path = LOGS / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # `make demo-down` stops it with any children
            )
        try:
            self._wait_ready(ready_path)
        except BaseException:  # interrupted, or an error: it must not outlive us
            self.stop()
            raise

    def _wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.log_path.stem} exited; see {self.log_path}")
            try:
                requests.get(self.url + path, timeout=5)
                return
            except (requests.ConnectionError, requests.Timeout):  # not up, or slow under load
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.log_path.stem} did not listen in {timeout} s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ControlledServer(ServerProcess):
    """A stand-in of ours with JSON control endpoints under one prefix."""

    control_prefix = ""

    def _control(self, method: str, name: str, body: dict | None = None) -> dict[str, Any]:
        response = requests.request(
            method, f"{self.url}{self.control_prefix}/{name}", json=body, timeout=10
        )
        response.raise_for_status()
        return response.json()


class CdnApiSimulator(ControlledServer):
    """The CDN API simulator in its own process, with its control endpoints."""

    control_prefix = "/_sim"

    def __init__(self, port: int = 0, **config: Any) -> None:
        port = port or free_port()
        args = [sys.executable, "-m", "tools.cdn_api_simulator", "--port", str(port)]
        for name, value in config.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif isinstance(value, (list, tuple)):
                args += [flag, *map(str, value)]
            elif value is not False:
                args += [flag, str(value)]
        super().__init__("cdn-api-simulator", args, f"http://127.0.0.1:{port}", "/_sim/stats")

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._control("POST", "config", changes)

    def reset(self) -> dict[str, Any]:
        return self._control("POST", "reset", {})

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "stats")


class BigQueryEmulator(ServerProcess):
    """local-bigquery (installed by `make bq-emulator`) with its data in `data_dir`."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        if not BQ_EMULATOR.exists():
            raise RuntimeError("the BigQuery emulator is not installed: run `make bq-emulator`")
        port = port or free_port()
        args = [
            str(BQ_EMULATOR), "serve", "--host", "127.0.0.1", "--port", str(port),
            "--grpc-port", str(free_port()), "--project", "local", "--data-dir", str(data_dir),
        ]  # fmt: skip
        # DuckDB finds the extension files installed by `make bq-emulator` under this HOME.
        env = {"HOME": str(LOCAL / "bq-home")}
        url = f"http://127.0.0.1:{port}"
        super().__init__("bq-emulator", args, url, "/bigquery/v2/projects/local/datasets", env)


class BigQueryFaultProxy(ControlledServer):
    """Forwards to a BigQuery endpoint and fails the jobs it is told to."""

    control_prefix = "/_proxy"

    def __init__(self, upstream: str, port: int = 0) -> None:
        port = port or free_port()
        args = [sys.executable, "-m", "tools.bigquery_fault_proxy", "--port", str(port),
                "--upstream", upstream]  # fmt: skip
        super().__init__("bq-fault-proxy", args, f"http://127.0.0.1:{port}", "/_proxy/stats")

    def refuse_dataset_creation(self, refuse: bool = True) -> dict[str, Any]:
        """Answer dataset creation with 403, as for a service account without the right."""
        return self._control("POST", "refuse", {"dataset_creation": refuse})

    def fail_jobs(self, containing: str, times: int = 1) -> dict[str, Any]:
        """Answer the next `times` job requests whose body contains the text with an error."""
        return self._control("POST", "fail", {"containing": containing, "times": times})

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "stats")

    def hold(self, containing: str, method: str | None = None) -> dict[str, Any]:
        """Keep the next request with the text in its path or body waiting (see stats)."""
        return self._control("POST", "hold", {"containing": containing, "method": method})

    def release(self, forward: bool) -> dict[str, Any]:
        """Send the held request on to BigQuery, or drop it."""
        return self._control("POST", "release", {"forward": forward})

    def hold_job(self, containing: str) -> dict[str, Any]:
        """Keep the next job with the text in its body running after its caller is gone."""
        return self._control("POST", "hold_job", {"containing": containing})

    def finish_held_jobs(self) -> list[str]:
        """Commit the held jobs nothing cancelled; their ids."""
        return self._control("POST", "finish_held_jobs")["committed"]


class SlackStandIn(ControlledServer):
    """The Slack Web API stand-in; `api_url` is what WebClient takes as base_url."""

    control_prefix = "/_slack"

    def __init__(self, token: str, channels: tuple[str, ...] = ("#cdn-alerts",), port: int = 0):
        port = port or free_port()
        args = [sys.executable, "-m", "tools.slack_standin", "--port", str(port),
                "--token", token, "--channels", *channels]  # fmt: skip
        super().__init__("slack-standin", args, f"http://127.0.0.1:{port}", "/_slack/messages")
        self.api_url = f"{self.url}/api/"

    def messages(self) -> list[dict[str, Any]]:
        return self._control("GET", "messages")

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._control("POST", "config", changes)

    def set_channel(self, name: str, **flags: bool) -> dict[str, Any]:
        """Add or change a channel: is_member, is_archived, is_private."""
        return self._control("POST", "channels", {"name": name, **flags})

    def reset(self) -> dict[str, Any]:
        return self._control("POST", "reset", {})


class GcsEmulator(ServerProcess):
    """gcp-storage-emulator, in memory; `url` is what STORAGE_EMULATOR_HOST takes."""

    def __init__(self, port: int = 0) -> None:
        port = port or free_port()
        emulator = Path(sys.executable).parent / "gcp-storage-emulator"
        args = [str(emulator), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
        super().__init__("gcs-emulator", args, f"http://127.0.0.1:{port}", "/storage/v1/b")
