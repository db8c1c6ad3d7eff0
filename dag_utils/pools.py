"""Noticing a missing pool from inside a run.

Airflow never starts a task whose pool does not exist: the scheduler logs a warning and
the task stays `scheduled` for ever. A task cannot ask whether a pool exists (the Task
SDK's execution API has no pool route), so a watch beside the pooled tasks reads what it
can: the states of its own run's tasks and how many tasks of its DAG hold each pool. A
pooled task still waiting after `env.POOL_WAIT` while no task holds its pool means the
pool is missing (or has no slot), and the watch fails naming it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

WAITING = {None, "none", "scheduled"}  # "scheduled": waiting for a pool slot or the executor
HOLDING = ["queued", "running"]
RETRYING = {"up_for_retry", "up_for_reschedule", "deferred", "restarting"}


def task_of(state_key: str, task_ids: Iterable[str]) -> str | None:
    """The task id of a Task SDK state key: `fetch_shard` or mapped `fetch_shard_3`."""
    for task_id in task_ids:
        if state_key == task_id or re.fullmatch(re.escape(task_id) + r"_\d+", state_key):
            return task_id
    return None


def waiting_pools(states: Mapping[str, str | None], pool_of: Mapping[str, str]) -> set[str]:
    """The pools that some task of the run is waiting for."""
    waiting = set()
    for key, state in states.items():
        task_id = task_of(key, pool_of)
        if task_id is not None and state in WAITING:
            waiting.add(pool_of[task_id])
    return waiting


def all_started(states: Mapping[str, str | None], pool_of: Mapping[str, str]) -> bool:
    """True once no pooled task of the run waits or retries: nothing is left to watch."""
    pooled = [s for key, s in states.items() if task_of(key, pool_of) is not None]
    return bool(pooled) and not any(s in WAITING or s in RETRYING for s in pooled)


def missing_pool_message(pool: str, waiting_task_ids: list[str], waited_s: float) -> str:
    return (
        f"{', '.join(waiting_task_ids)} waited {waited_s:.0f} s for pool {pool!r} and no task "
        f"holds a slot of it: the pool does not exist or has no slot. Create it (make "
        f"provision ENV=... AIRFLOW_URL=..., or Admin > Pools), then clear this run."
    )


def holders(
    pool: str, dag_id: str, pool_of: Mapping[str, str], shared: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[str]]:
    """Every (DAG id, task ids) that can hold `pool`: this DAG's tasks on it, and the other
    DAGs' tasks that share it (a slot held by another DAG is no sign of a missing pool)."""
    own = {dag_id: sorted(t for t, p in pool_of.items() if p == pool)}
    return own | {other: sorted(ids) for other, ids in shared.get(pool, {}).items()}


def watch(
    ti: Any,
    dag: Any,
    dag_run: Any,
    since: datetime,
    wait: timedelta,
    shared: Mapping[str, Mapping[str, Any]],
    recheck_s: float = 10,
) -> bool:
    """One poke of the watch that has been watching since `since`: True when every pooled
    task of the run has started; raises AirflowFailException naming a missing pool.
    `shared`: pool -> {other DAG id: its task ids on that pool}."""
    from airflow.sdk.exceptions import AirflowFailException

    pool_of = {t.task_id: t.pool for t in dag.tasks if t.pool and t.pool != "default_pool"}

    def states() -> dict[str, str | None]:
        return ti.get_task_states(dag_id=dag.dag_id, run_ids=[dag_run.run_id]).get(
            dag_run.run_id, {}
        )

    seen = states()
    if all_started(seen, pool_of):
        return True
    waited = (datetime.now(UTC) - since).total_seconds()
    if waited < wait.total_seconds():
        return False
    for pool in sorted(waiting_pools(seen, pool_of)):
        users = holders(pool, dag.dag_id, pool_of, shared)
        if _held(ti, users):
            continue
        time.sleep(recheck_s)  # between one holder ending and the next starting, none holds it
        now = states()
        if pool in waiting_pools(now, pool_of) and not _held(ti, users):
            own = users[dag.dag_id]
            stuck = sorted({t for k, s in now.items() if (t := task_of(k, own)) and s in WAITING})
            raise AirflowFailException(missing_pool_message(pool, stuck, waited))
    return False


def _held(ti: Any, users: Mapping[str, list[str]]) -> bool:
    return any(
        ti.get_ti_count(dag_id=dag_id, task_ids=task_ids, states=HOLDING) > 0
        for dag_id, task_ids in users.items()
        if task_ids
    )
