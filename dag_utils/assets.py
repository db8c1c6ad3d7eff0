"""The pipeline's BigQuery tables as Airflow assets, for lineage: the Assets page and the
DAG graphs show raw table -> transform -> dashboard table -> alert check.

Built from `env` and the table specs, no I/O. The URI is the google provider's form for
a BigQuery table, `bigquery://<project>/<dataset>/<table>`, which its URI sanitizer checks.
"""

from __future__ import annotations

from airflow.sdk import Asset

import env
from dag_utils import tables
from dag_utils.windows import Window


def table_asset(spec: tables.TableSpec) -> Asset:
    """The table of `spec` in the configured project and dataset; named by its table id."""
    project, dataset = env.GCP_PROJECT, env.BQ_DATASET
    return Asset(
        name=f"{project}.{dataset}.{spec.name}",
        uri=f"bigquery://{project}/{dataset}/{spec.name}",
        group="bigquery",
        extra={"description": spec.description},
    )


RAW = table_asset(tables.RAW)
AUDIT = table_asset(tables.AUDIT)
DASHBOARD = table_asset(tables.DASHBOARD)


def window_extra(window: Window) -> dict[str, str]:
    """What an asset event says about the window written: shown with the event in the UI."""
    return {"window_start": window.start.isoformat(), "window_end": window.end.isoformat()}
