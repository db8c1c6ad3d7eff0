"""Start and stop the local stand-ins as child processes on 127.0.0.1.

Used by the test fixtures, the benchmark and `make demo`, so each server is
started one way everywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Self

import requests

REPO = Path(__file__).resolve().parent.parent


class ServerProcess:
    """A child process that prints {"url": ...} as its first line once it listens."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise RuntimeError(f"{args[:3]} exited with {self.proc.returncode} before listening")
        self.url: str = json.loads(line)["url"]

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


class CdnApiSimulator(ServerProcess):
    """The CDN API simulator in its own process, with its control endpoints."""

    def __init__(self, port: int = 0, **config: Any) -> None:
        args = [sys.executable, "-m", "tools.cdn_api_simulator", "--port", str(port)]
        for name, value in config.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif isinstance(value, (list, tuple)):
                args += [flag, *map(str, value)]
            elif value is not False:
                args += [flag, str(value)]
        super().__init__(args)
        self.http = requests.Session()

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._post("/_sim/config", changes)

    def reset(self) -> dict[str, Any]:
        return self._post("/_sim/reset", {})

    def stats(self) -> dict[str, Any]:
        response = self.http.get(f"{self.url}/_sim/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(f"{self.url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()
