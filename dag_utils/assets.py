"""The pipeline's BigQuery tables as Airflow assets, for lineage: the Assets page and the
DAG graphs show raw table -> transform -> dashboard table -> alert check.

Each table is an `Asset` with the google provider's URI for a BigQuery table,
`bigquery://<project>/<dataset>/<table>`. The DAG files declare an `AssetAlias` per table
as the tasks' outlets and inlets, and the writing task adds the table's asset event to
its alias at run time (`record_writes`). Why not the Asset itself at parse time: the
first Asset with a URI scheme built in a process makes Airflow import every provider's
asset URI handler, and the google provider's `gs` handler imports its GCS hook, about
1.1 s of CPU on every parse of every DAG file (`make bench`). An alias has no URI, and
costs nothing to build.

Built from `env` and the table specs, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow.sdk import Asset, AssetAlias

import env
from dag_utils import tables
from dag_utils.windows import Window


def table_id(spec: tables.TableSpec) -> str:
    return f"{env.GCP_PROJECT}.{env.BQ_DATASET}.{spec.name}"


def table_alias(spec: tables.TableSpec) -> AssetAlias:
    """What a task declares it reads or writes: resolved to `table_asset(spec)` by a run."""
    return AssetAlias(name=table_id(spec), group="bigquery")


def table_asset(spec: tables.TableSpec) -> Asset:
    """The table of `spec` in the configured project and dataset; named by its table id.

    Build it only inside a task: the URI loads the providers' URI handlers (above).
    """
    project, dataset = env.GCP_PROJECT, env.BQ_DATASET
    return Asset(
        name=table_id(spec),
        uri=f"bigquery://{project}/{dataset}/{spec.name}",
        group="bigquery",
        extra={"description": spec.description},
    )


RAW = table_alias(tables.RAW)
AUDIT = table_alias(tables.AUDIT)
DASHBOARD = table_alias(tables.DASHBOARD)


def window_extra(window: Window) -> dict[str, str]:
    """What an asset event says about the window written: shown with the event in the UI."""
    return {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}


def record_writes(outlet_events: Any, specs: Iterable[tables.TableSpec], window: Window) -> None:
    """One asset event per table written, through the task's aliases, with the window."""
    for spec in specs:
        outlet_events[table_alias(spec)].add(table_asset(spec), extra=window_extra(window))
