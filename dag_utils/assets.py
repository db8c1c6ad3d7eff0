"""The pipeline's BigQuery tables as Airflow assets, for lineage: the Assets page lists
them, and an asset's graph shows raw table -> transform -> dashboard table -> alert check.

Each table is an `Asset` with the google provider's URI for a BigQuery table,
`bigquery://<project>/<dataset>/<table>`, named by its table id. The DAG files declare
the assets themselves as the tasks' outlets and inlets, so the DAG processor registers
them; a writing task's success records one event per table, with its window in the extra
(`record_writes`).

Built without Airflow's URI sanitizer: `Asset(uri=...)` passes a URI with a scheme to
every provider's asset URI handler, and the first such call in a process imports them
all; the google provider's `gs` handler imports its GCS hook, about 1.5 s of CPU on every
parse of every DAG file (`make bench`). `table_asset` builds the asset from a URI with no
scheme, which the sanitizer leaves as it is, then sets the `bigquery://` URI, which is
what the provider's handler returns for it unchanged (tests/test_dag_integrity.py runs
the handler on it). The metadata DB keeps the URI as given: the scheduler side has no
sanitizer (its assets are `SerializedAsset`s).

Built from `env` and the table specs, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow.sdk import Asset

import env
from dag_utils import tables
from dag_utils.windows import Window


def table_id(spec: tables.TableSpec) -> str:
    return f"{env.GCP_PROJECT}.{env.BQ_DATASET}.{spec.name}"


def table_uri(spec: tables.TableSpec) -> str:
    return f"bigquery://{env.GCP_PROJECT}/{env.BQ_DATASET}/{spec.name}"


def table_asset(spec: tables.TableSpec) -> Asset:
    """The table of `spec` in the configured project and dataset, as an asset."""
    asset = Asset(
        name=table_id(spec),
        uri=table_id(spec),  # no scheme: the sanitizer loads no provider for it
        group="bigquery",
        extra={"description": spec.description},
    )
    object.__setattr__(asset, "uri", table_uri(spec))  # past attrs' on-setattr converter
    return asset


RAW = table_asset(tables.RAW)
AUDIT = table_asset(tables.AUDIT)
DASHBOARD = table_asset(tables.DASHBOARD)


def window_extra(window: Window) -> dict[str, str]:
    """What an asset event says about the window written: shown with the event in the UI."""
    return {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}


def record_writes(outlet_events: Any, specs: Iterable[tables.TableSpec], window: Window) -> None:
    """The window in the event each table written gets when the task succeeds."""
    for spec in specs:
        outlet_events[table_asset(spec)].extra = window_extra(window)
