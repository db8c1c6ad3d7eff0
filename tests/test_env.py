"""env.py in a Composer environment: a missing setting stops the DAGs from loading, loudly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tools.local_servers import REPO


def import_env(
    code: str = "print(env.ENVIRONMENT, env.START_DATE.isoformat())", **settings: str
) -> subprocess.CompletedProcess:
    """Import env.py in a fresh interpreter with exactly these CDN_/COMPOSER_ settings,
    then run `code`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CDN_", "COMPOSER_"))}
    return subprocess.run(
        [sys.executable, "-c", f"import env; {code}"],
        cwd=REPO,
        env=base | {"PYTHONPATH": str(REPO)} | settings,
        capture_output=True,
        text=True,
        check=False,
    )


def test_in_composer_an_unset_cdn_env_refuses_to_load() -> None:
    done = import_env(COMPOSER_ENVIRONMENT="cdn-prod", CDN_START_DATE="2026-12-01T00:00:00Z")
    assert done.returncode != 0
    assert "CDN_ENV is not set in this Composer environment" in done.stderr


@pytest.mark.parametrize("cdn_env", ["dev", "prod"])
def test_in_composer_an_unset_start_date_refuses_to_load(cdn_env: str) -> None:
    done = import_env(COMPOSER_ENVIRONMENT="cdn-prod", CDN_ENV=cdn_env)
    assert done.returncode != 0
    assert "CDN_START_DATE is not set" in done.stderr


def test_in_composer_with_both_set_it_loads_that_profile() -> None:
    done = import_env(
        COMPOSER_ENVIRONMENT="cdn-prod", CDN_ENV="prod", CDN_START_DATE="2026-12-01T00:00:00Z"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "prod"
    assert done.stdout.split()[1].startswith("2026-12-01T00:00:00")


def test_outside_composer_the_local_profile_and_its_default_start_apply() -> None:
    done = import_env()
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "local"


def test_an_airflow_older_than_the_matrix_fails_the_import_naming_the_composer_build() -> None:
    from dag_utils import airflow_too_old

    assert airflow_too_old("3.3.1") is None and airflow_too_old("3.2.2") is None
    assert airflow_too_old("3.4.0") is None
    for old in ("3.1.8", "3.0.6", "2.11.1", "3.2.1"):
        assert "composer-3-airflow-3.2.2-build.N or a later build" in airflow_too_old(old)


RETENTIONS = "print(env.RAW_RETENTION_DAYS, env.DASHBOARD_RETENTION_DAYS, env.AUDIT_RETENTION_DAYS)"


def retention(**settings: str) -> subprocess.CompletedProcess:
    return import_env(RETENTIONS, **settings)


def test_retention_is_400_days_unless_set_and_never_is_allowed() -> None:
    assert retention().stdout.split() == ["400", "400", "400"]
    done = retention(CDN_RAW_RETENTION_DAYS="never", CDN_AUDIT_RETENTION_DAYS="90")
    assert done.stdout.split() == ["None", "400", "90"]


@pytest.mark.parametrize("value", ["0", "1", "-5", "30d", "forever", ""])
def test_a_retention_that_is_not_days_or_never_refuses_to_load(value: str) -> None:
    done = retention(CDN_DASHBOARD_RETENTION_DAYS=value)
    assert done.returncode != 0
    assert "CDN_DASHBOARD_RETENTION_DAYS" in done.stderr and "or never" in done.stderr
