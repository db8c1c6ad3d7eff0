"""Airflow Variables written by tasks, checked: a write that did not stick fails the task.

Task SDK 1.2.x (Airflow 3.2) logs a rejected `Variable.set` and returns (apache/airflow
issue #68537), and a variable of the same key in a secrets backend or an AIRFLOW_VAR_
environment variable shadows whatever is written to the metadata DB. Either way the value
read next is not the one written, so the write is read back.
"""

from __future__ import annotations

import json
from typing import Any


def set_json_checked(key: str, value: Any) -> None:
    """Variable.set(key, value) as JSON, then fails the task unless it reads back the same."""
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import AirflowFailException

    Variable.set(key, value, serialize_json=True)
    stored = Variable.get(key, default=None, deserialize_json=True)
    if stored != json.loads(json.dumps(value)):
        raise AirflowFailException(
            f"the Airflow Variable {key!r} did not keep the value written: the write was "
            "rejected or a secrets backend / AIRFLOW_VAR_ environment variable of that key "
            "shadows it (see the task log and README 'First deploy')"
        )
