"""BigQuery jobs: each labelled with the task try that started it, bounded by a job
timeout, and cancelled when its task is killed, times out, or is found dead by a later
writer. `dag_utils.bigquery` starts every job through here.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import env

if TYPE_CHECKING:
    from google.cloud.bigquery import Client

log = logging.getLogger(__name__)
RESULT_TIMEOUT_S = env.BQ_JOB_TIMEOUT.total_seconds() + 60  # BigQuery stops it first
_CANCEL_POLL_S = 1.0


@dataclass(frozen=True)
class JobContext:
    """Who starts the BigQuery jobs: a DAG's task, for a window, in a try.

    Every job carries it as labels (a later try finds a dead try's jobs by them; they also
    attribute cost per window in INFORMATION_SCHEMA.JOBS) and in its job id's prefix.
    """

    dag_id: str = "adhoc"
    task_id: str = "adhoc"
    window_start: datetime | None = None
    try_number: int = 0

    def labels(self) -> dict[str, str]:
        window = f"{self.window_start.astimezone(UTC):%Y%m%dt%H%M}" if self.window_start else ""
        labels = {"dag": self.dag_id, "task": self.task_id, "window_start": window,
                  "try": str(self.try_number)}  # fmt: skip
        return {key: label_value(value) for key, value in labels.items()}

    def job_id_prefix(self) -> str:
        labels = self.labels()
        parts = (labels["dag"], labels["task"], labels["window_start"] or "none")
        return "_".join((*parts, f"try{self.try_number}", ""))


_CONTEXT: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "bigquery_jobs", default=None
)
_STARTED: dict[str, Any] = {}  # job id -> this process's jobs not yet waited for


def label_value(text: str) -> str:
    """A BigQuery label value: lowercase letters, digits, _ and -, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "_", text.lower())[:63]


def current_jobs() -> JobContext:
    return _CONTEXT.get() or JobContext()


@contextlib.contextmanager
def jobs_for(context: JobContext) -> Iterator[JobContext]:
    """Start this block's jobs as `context`'s (labels, job id prefix)."""
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def settings() -> tuple[dict[str, str], int]:
    """The labels and job timeout (ms) of a job started now."""
    return current_jobs().labels(), int(env.BQ_JOB_TIMEOUT.total_seconds() * 1000)


def id_prefix() -> str:
    return current_jobs().job_id_prefix()


@contextlib.contextmanager
def running(job: Any) -> Iterator[None]:
    """While the caller waits for the job: on_kill can cancel it; an interrupted wait
    (execution timeout, Ctrl-C) or a failed one cancels it before the exception goes on."""
    _STARTED[job.job_id] = job
    try:
        yield
    except BaseException:
        if job.state != "DONE":
            _cancel(job)
        raise
    finally:
        _STARTED.pop(job.job_id, None)


def _cancel(job: Any, bq: Client | None = None) -> None:
    try:
        job.cancel(client=bq)
        log.warning("cancelled BigQuery job %s", job.job_id)
    except Exception:  # the job timeout still bounds it
        log.exception("could not cancel BigQuery job %s", job.job_id)


def cancel_started_jobs() -> list[str]:
    """Cancel the jobs this process is waiting for (a task's on_kill), on a client of its
    own: the interrupted wait may be inside the other client's connection pool."""
    from dag_utils.bigquery import client

    started = list(_STARTED.values())
    if started:
        bq = client()
        for job in started:
            _cancel(job, bq)
    return [job.job_id for job in started]


def end_dead_writes(
    bq: Client, writers: Mapping[str, str], wait_s: float = env.BQ_CANCEL_WAIT_S
) -> list[str]:
    """Cancel the writing tasks' jobs still pending or running, and wait until they end.

    A writer calls it holding the write pool's one slot, before it writes: any other
    writer job still alive then belongs to a try that was killed (SIGKILL, lost worker)
    and left it running in BigQuery, where it could commit beside this write. `writers`:
    DAG id -> its writing task. Jobs list only by time and state (no label filter in
    jobs.list): the labels are matched here. Raises if one has not ended after `wait_s`.
    """
    wanted = {(label_value(dag), label_value(task)) for dag, task in writers.items()}
    since = datetime.now(UTC) - env.BQ_JOB_TIMEOUT - env.BQ_JOB_LOOKBACK_MARGIN
    alive = list(
        {  # by id: a job may move from pending to running between the two lists
            job.job_id: job
            for state in ("pending", "running")
            for job in bq.list_jobs(state_filter=state, min_creation_time=since)
            if (job.labels.get("dag"), job.labels.get("task")) in wanted
            and job.job_id not in _STARTED
        }.values()
    )
    for job in alive:
        log.warning("a dead try's BigQuery job is still %s: %s %s", job.state, job.job_id,
                    job.labels)  # fmt: skip
        job.cancel(client=bq)
    deadline = time.monotonic() + wait_s
    for job in alive:
        job.reload(client=bq)
        while job.state != "DONE":
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"BigQuery job {job.job_id} of an earlier try is still {job.state} "
                    f"{wait_s:.0f} s after it was cancelled: not writing beside it. The next "
                    "try checks again; the job ends at its job timeout at the latest"
                )
            time.sleep(_CANCEL_POLL_S)
            job.reload(client=bq)
    return [job.job_id for job in alive]
