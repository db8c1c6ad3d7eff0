"""`python -m dag_utils.cdn_api`: the operators' and benchmarks' command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dag_utils.cdn_api.__main__ import minute_of, window_minutes
from tests.conftest import MINUTE, TEST_SIM, TOKEN
from tools.cdn_api_simulator import HOSTILE_DOMAINS, true_metrics
from tools.local_servers import CdnApiSimulator

WINDOW = ["--start", "2026-11-23T10:00Z", "--end", "2026-11-23T10:02Z"]


def cli(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CDN_API_TOKEN"}
    if token is not None:
        env["CDN_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "dag_utils.cdn_api", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_writes_one_json_object_per_domain_minute_and_the_stats_last(
    sim: CdnApiSimulator, tmp_path: Path
) -> None:
    sim.configure(hostile=True)
    out = tmp_path / "raw.jsonl"
    done = cli("--base-url", sim.url, *WINDOW, "--out", str(out), "--max-concurrency", "4")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 * (len(TEST_SIM.domain_list()) + len(HOSTILE_DOMAINS))  # 2 minutes
    for line in lines:
        assert set(line) == {"domain", "minute", "metrics", "errors"} and line["errors"] == {}
        for endpoint, values in line["metrics"].items():
            assert values == true_metrics(line["domain"], line["minute"], endpoint, TEST_SIM)
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["complete"] == len(lines) and stats["max_in_flight"] <= 4
    assert TOKEN not in done.stdout + done.stderr


def test_exit_code_3_when_some_records_are_incomplete(sim: CdnApiSimulator, tmp_path: Path) -> None:
    sim.configure(rate_empty=0.5)
    out = tmp_path / "raw.jsonl"
    done = cli("--base-url", sim.url, *WINDOW, "--out", str(out))
    assert done.returncode == 3
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(line["errors"] for line in lines)


@pytest.mark.parametrize(
    "args",
    [
        ["--start", "2026-11-23T10:05Z", "--end", "2026-11-23T10:00Z"],
        ["--start", "2026-11-23T10:00", "--end", "2026-11-23T10:05Z"],
        ["--start", "2026-11-23T10:00:30Z", "--end", "2026-11-23T10:05Z"],
        ["--start", "yesterday", "--end", "2026-11-23T10:05Z"],
    ],
)
def test_exit_code_2_on_bad_arguments(args: list[str], tmp_path: Path) -> None:
    done = cli("--base-url", "http://127.0.0.1:9", *args, "--out", str(tmp_path / "x"))
    assert done.returncode == 2


def test_exit_code_2_on_a_rejected_or_missing_token(sim: CdnApiSimulator, tmp_path: Path) -> None:
    out = tmp_path / "raw.jsonl"
    rejected = cli("--base-url", sim.url, *WINDOW, "--out", str(out), token="wrong-token")
    assert rejected.returncode == 2 and "rejected the token" in rejected.stderr
    assert "wrong-token" not in rejected.stdout + rejected.stderr
    assert not out.exists()
    assert cli("--base-url", sim.url, *WINDOW, "--out", str(out), token=None).returncode == 2


def test_exit_code_1_when_the_api_cannot_be_reached(tmp_path: Path) -> None:
    done = cli(
        "--base-url",
        "http://127.0.0.1:9",
        *WINDOW,
        "--out",
        str(tmp_path / "x"),
        "--deadline-s",
        "1",
    )
    assert done.returncode == 1 and "could not read the domain list" in done.stderr


def test_window_arithmetic() -> None:
    assert minute_of("2026-11-23T10:00Z") == MINUTE
    assert minute_of("2026-11-23T19:00+09:00") == MINUTE
    assert window_minutes(MINUTE, MINUTE + 300) == [MINUTE + 60 * i for i in range(5)]
    with pytest.raises(ValueError, match="whole minutes"):
        window_minutes(MINUTE, MINUTE)
