"""The demo's catch-up progress: one line per DAG, redrawn on a terminal, else on change."""

from __future__ import annotations

import io

from rich.console import Console

from tools.progress import CatchupProgress

DAGS = ("cdn_raw_ingest", "cdn_data_alert")


def test_without_a_terminal_a_line_is_printed_only_when_a_dags_counts_change() -> None:
    out = io.StringIO()
    with CatchupProgress(DAGS, Console(file=out, force_terminal=False)) as progress:
        for _ in range(3):  # three polls, nothing new
            progress.update("cdn_raw_ingest", ["success", "running"], expected=12)
            progress.update("cdn_data_alert", [], expected=12)
        progress.update("cdn_raw_ingest", ["success", "failed", "running"], expected=12)
        progress.update("cdn_data_alert", [], expected=12)
    lines = [line.split(", ")[:2] for line in out.getvalue().splitlines()]
    assert lines == [
        ["  cdn_raw_ingest   1/12  runs done", "0 failed"],
        ["  cdn_data_alert   0/12  runs done", "0 failed"],
        ["  cdn_raw_ingest   2/12  runs done", "1 failed"],
    ]


def test_on_a_terminal_each_dag_has_one_live_line_with_its_counts() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with CatchupProgress(DAGS, console) as progress:
        progress.update("cdn_raw_ingest", ["success"] * 12, expected=12)
        progress.update("cdn_data_alert", ["success", "failed", "queued"], expected=12)
    final = out.getvalue().rsplit("\r", 1)[-1]  # the last redraw, in place of the first
    assert "12/12  runs done, 0 failed" in final
    assert " 2/12  runs done, 1 failed" in final
    assert final.count("runs done") == len(DAGS)
