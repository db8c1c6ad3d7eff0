"""The catch-up's progress, one line per DAG: runs done / total, failed, elapsed.

On a terminal the lines are a live rich display, redrawn in place; elsewhere (CI, a
pipe) a plain line is printed for a DAG only when its counts change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Self

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text


@dataclass
class DagProgress:
    done: int = 0
    total: int = 0
    failed: int = 0
    finished_after: float | None = None  # seconds, once every run has finished


class CatchupProgress:
    def __init__(self, dag_ids: tuple[str, ...], console: Console | None = None) -> None:
        self.console = console or Console()
        self.started = time.monotonic()
        self.dags = {dag_id: DagProgress() for dag_id in dag_ids}
        self.live = self.console.is_terminal
        self.width = max(map(len, dag_ids))
        self.progress = Progress(
            TextColumn(f"  {{task.description:<{self.width}}}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            _Elapsed(),
            console=self.console,
            disable=not self.live,
        )
        self.tasks: dict[str, TaskID] = {
            dag_id: self.progress.add_task(dag_id, total=None, counts="", finished_after=None)
            for dag_id in dag_ids
        }

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, dag_id: str, states: list[str], expected: int) -> None:
        """The DAG's run states now; `expected` runs at least make up the catch-up."""
        now = DagProgress(
            done=sum(s in ("success", "failed") for s in states),
            total=max(len(states), expected),
            failed=states.count("failed"),
        )
        before = self.dags[dag_id]
        if now.done == now.total:  # the clock stops when the last run finishes
            now.finished_after = before.finished_after or self._elapsed()
        self.dags[dag_id] = now
        self.progress.update(
            self.tasks[dag_id],
            completed=now.done,
            total=now.total,
            counts=f"{now.done:>3}/{now.total:<3} runs done, {now.failed} failed,",
            finished_after=now.finished_after,
        )
        changed = (before.done, before.total, before.failed) != (now.done, now.total, now.failed)
        if not self.live and changed:
            self.console.print(
                f"  {dag_id:<{self.width}} {now.done:>3}/{now.total:<3} runs done, "
                f"{now.failed} failed, {_clock(now.finished_after or self._elapsed())} elapsed",
                highlight=False,
            )

    def _elapsed(self) -> float:
        return time.monotonic() - self.started


class _Elapsed(ProgressColumn):
    """Time since the catch-up started, stopped while every run of the DAG has finished."""

    def render(self, task: Task) -> Text:
        return Text(_clock(task.fields["finished_after"] or task.elapsed or 0) + " elapsed")


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"
