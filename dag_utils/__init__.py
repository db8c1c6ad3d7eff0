"""Shared library of the CDN statistics DAGs: plain, tested functions the DAG files wire up.

Importing it on an Airflow older than the support matrix's (README) fails the DAG import
with the minimum Composer build named, instead of an AttributeError deep in the Task SDK.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

MIN_AIRFLOW = (3, 2, 2)
MIN_COMPOSER_IMAGE = "composer-3-airflow-3.2.2-build.N"


def airflow_too_old(installed: str) -> str | None:
    """Why this Airflow cannot run the bundle, or None when it can."""
    parts = tuple(int(p) for p in installed.split(".")[:3] if p.isdigit())
    if parts >= MIN_AIRFLOW:
        return None
    return (
        f"Airflow {installed} is too old for the CDN DAGs: they need Airflow 3.2.2 or later, "
        f"on Cloud Composer {MIN_COMPOSER_IMAGE} or a later build (README 'Support matrix')"
    )


try:
    _problem = airflow_too_old(version("apache-airflow-core"))
except PackageNotFoundError:  # Airflow 2 has no apache-airflow-core distribution
    _problem = airflow_too_old(version("apache-airflow"))
if _problem:
    raise ImportError(_problem)
