"""`@bigquery_task`: an Airflow @task whose BigQuery jobs are labelled and die with it.

Airflow 3's task runner calls the operator's `on_kill` when the task process gets SIGTERM
(the supervisor forwards it: a worker shutting down, a task cleared or marked failed while
running) and after an execution timeout. A plain @task's `on_kill` does nothing, so a job
it waits for would go on in BigQuery. SIGKILL and a lost worker leave no one to cancel:
the next writer does (`bigquery_jobs.end_dead_writes`), and the job timeout bounds the rest.

No BigQuery import here: DAG files import this at parse time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk.bases.decorator import task_decorator_factory


class BigQueryTaskOperator(_PythonDecoratedOperator):
    custom_operator_name = "@bigquery_task"

    def on_kill(self) -> None:
        from dag_utils import bigquery_jobs

        cancelled = bigquery_jobs.cancel_started_jobs()
        self.log.warning("on_kill cancelled BigQuery jobs: %s", cancelled or "none running")


def bigquery_task(python_callable: Callable | None = None, **kwargs: Any):
    """Like @task (same arguments); the task's on_kill cancels its running BigQuery job."""
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=BigQueryTaskOperator, **kwargs
    )


@contextlib.contextmanager
def jobs_of(ti: Any, window_start: datetime | None) -> Iterator[None]:
    """Label the block's BigQuery jobs with this task try and its window."""
    from dag_utils import bigquery_jobs

    context = bigquery_jobs.JobContext(ti.dag_id, ti.task_id, window_start, ti.try_number)
    with bigquery_jobs.jobs_for(context):
        yield
