"""`make deploy` against gcp-storage-emulator: exactly the bundle, and nothing else touched."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.dag_check import parse_bundle
from tools.deploy import (
    IGNORE,
    MANIFEST,
    bundle_files,
    deploy,
    image_problems,
    merged_ignore,
    secrets_in,
    staged_parse,
)
from tools.local_servers import REPO, GcsEmulator

BUCKET = "composer-test-bucket"
THEIR_DAG = b"from airflow.sdk import DAG\n\nwith DAG('their_dag', schedule=None):\n    pass\n"
OTHERS = {"dags/other_team_dag.py": b"# not ours", "data/export.csv": b"a,b\n"}


@pytest.fixture(scope="module")
def gcs() -> Iterator[GcsEmulator]:
    with GcsEmulator() as emulator:
        yield emulator


@pytest.fixture
def bucket(gcs: GcsEmulator, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    from tools.deploy import storage_client

    client = storage_client()
    existing = client.lookup_bucket(BUCKET)
    if existing is not None:
        existing.delete(force=True)
    created = client.create_bucket(BUCKET)
    for name, content in OTHERS.items():
        created.blob(name).upload_from_string(content)
    return created


def names(bucket) -> set[str]:
    return {b.name for b in bucket.client.list_blobs(BUCKET)}


def test_the_bundle_has_every_sub_package_and_nothing_else() -> None:
    files = bundle_files()
    assert "dags/dag_utils/cdn_api/client.py" in files  # a sub-package
    assert {"dags/env.py", "dags/.airflowignore", "dags/dags/cdn_raw_ingest.py"} <= set(files)
    assert not [n for n in files if n.startswith(("dags/tests/", "dags/tools/")) or ".pyc" in n]
    assert secrets_in(files) == []


def test_a_dry_run_lists_the_bundle_and_changes_nothing(bucket) -> None:
    steps = deploy(f"gs://{BUCKET}", "dev", dry_run=True, checks=False)
    assert set(steps.uploads) == set(bundle_files()) and steps.deletions == []
    assert names(bucket) == set(OTHERS)


def test_deploys_sync_the_bundle_and_leave_everything_else_alone(bucket, tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    for entry in ("dags", "dag_utils", "env.py", ".airflowignore"):
        source = REPO / entry
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / entry)  # type: ignore[operator]

    first = deploy(f"gs://{BUCKET}", "prod", dry_run=False, root=root, checks=False)
    assert names(bucket) == set(OTHERS) | set(bundle_files(root)) | {MANIFEST}
    assert bucket.blob(IGNORE).download_as_bytes().decode() == merged_ignore(
        None, (root / ".airflowignore").read_text()
    )
    assert (
        bucket.blob("dags/dag_utils/cdn_api/limiter.py").download_as_bytes()
        == (root / "dag_utils/cdn_api/limiter.py").read_bytes()
    )

    (root / "dag_utils" / "transform.py").unlink()  # a module the next version drops
    (root / "env.py").write_text((root / "env.py").read_text() + "\n# changed\n")
    second = deploy(f"gs://{BUCKET}", "prod", dry_run=False, root=root, checks=False)
    assert second.uploads == ["dags/env.py"]
    assert second.deletions == ["dags/dag_utils/transform.py"]
    assert len(second.unchanged) == len(first.uploads) - 2
    assert names(bucket) == set(OTHERS) | set(bundle_files(root)) | {MANIFEST}
    assert bucket.blob("dags/other_team_dag.py").download_as_bytes() == b"# not ours"


def test_a_secret_in_the_bundle_stops_the_deploy(bucket, tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "dags", root / "dags")
    (root / "dags" / "leak.py").write_text('TOKEN = "xox' + 'b-1234567890-abcdefghij"\n')
    with pytest.raises(SystemExit, match="Slack token"):
        deploy(f"gs://{BUCKET}", "prod", dry_run=True, root=root)
    assert names(bucket) == set(OTHERS)


def test_the_pre_deploy_checks_pass_on_this_checkout(bucket) -> None:
    steps = deploy(f"gs://{BUCKET}", "prod", dry_run=True)  # ruff, parse alone, secrets
    assert steps.uploads


def described(image: str = "composer-3-airflow-3.3.1-build.3", **variables: str) -> dict:
    """What `gcloud composer environments describe --format=json(...)` prints."""
    variables = {"CDN_ENV": "prod", "CDN_START_DATE": "2026-12-01T00:00:00Z"} | variables
    return {
        "config": {
            "softwareConfig": {"imageVersion": image, "envVariables": variables},
            "dagGcsPrefix": f"gs://{BUCKET}/dags",
        }
    }


@pytest.mark.parametrize(
    ("image", "refused"),
    [
        ("composer-3-airflow-3.3.1-build.3", None),
        ("composer-3-airflow-3.2.2-build.1", None),
        ("composer-3-airflow-3.1.8-build.2", "needs Composer 3 with Airflow 3.2.2 or later"),
        ("composer-3-airflow-2.11.1", "cannot be upgraded in place"),
        ("composer-2.9.7-airflow-2.9.3", "needs Composer 3"),
        ("composer-3-airflow-3.4.0-build.1", "not tested"),
        ("latest", "cannot read"),
    ],
)
def test_only_the_tested_composer_builds_are_deployed_to(image: str, refused: str | None) -> None:
    problems = image_problems(image)
    assert (problems == []) if refused is None else (refused in problems[0])


def test_an_environment_of_another_profile_or_build_is_refused(bucket) -> None:
    url = f"gs://{BUCKET}"
    with pytest.raises(SystemExit, match="CDN_ENV is 'dev', not 'prod'"):
        deploy(url, "prod", dry_run=True, checks=False, described=described(CDN_ENV="dev"))
    with pytest.raises(SystemExit, match=r"Airflow 3\.2\.2 or later"):
        deploy(url, "prod", True, checks=False, described=described("composer-3-airflow-3.1.8"))
    with pytest.raises(SystemExit, match="no CDN_START_DATE"):
        deploy(url, "prod", True, checks=False, described=described(CDN_START_DATE=""))
    assert names(bucket) == set(OTHERS)
    assert deploy(url, "prod", True, checks=False, described=described()).uploads


def test_an_existing_airflowignore_keeps_its_lines_and_gets_ours_once(bucket) -> None:
    bucket.blob(IGNORE).upload_from_string("# the data team\n/scratch/\n")
    deploy(f"gs://{BUCKET}", "prod", dry_run=False, checks=False)
    again = deploy(f"gs://{BUCKET}", "prod", dry_run=False, checks=False)
    assert IGNORE in again.unchanged  # merging twice changes nothing
    text = bucket.blob(IGNORE).download_as_bytes().decode()
    assert text.startswith("# the data team\n/scratch/\n")
    assert text.count("/dag_utils/") == 1 and "/env.py" in text


@pytest.mark.parametrize("theirs", ["dags/dag_utils/__init__.py", "dags/env.py"])
def test_a_foreign_dag_utils_or_env_py_is_never_overwritten(bucket, theirs: str) -> None:
    bucket.blob(theirs).upload_from_string(b"# another bundle's")
    with pytest.raises(SystemExit, match=f"(?s)did not put there.*{theirs}"):
        deploy(f"gs://{BUCKET}", "prod", dry_run=True, checks=False)
    assert bucket.blob(theirs).download_as_bytes() == b"# another bundle's"


def test_the_staged_bucket_parses_alone_and_env_py_is_not_a_dag_file() -> None:
    contents = {name: path.read_bytes() for name, path in bundle_files().items()}
    contents[IGNORE] = merged_ignore("/scratch/\n", contents[IGNORE].decode()).encode()
    contents["dags/other_team/tests/their_dag.py"] = THEIR_DAG
    parsed = staged_parse(contents, {"CDN_ENV": "prod"})
    assert parsed["errors"] == {}
    assert "their_dag" in parsed["dags"]
    assert "env.py" not in parsed["files"] and not any("dag_utils" in f for f in parsed["files"])
    # anchored patterns: another team's tests/ folder deeper down is still parsed
    assert "other_team/tests/their_dag.py" in parsed["files"]


def test_the_staged_parse_needs_no_pythonpath_help(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    shutil.copytree(REPO / "dags", folder / "dags")  # the DAG files without their packages
    parsed = parse_bundle(folder, {"CDN_ENV": "prod"})
    assert any("No module named 'env'" in error for error in parsed["errors"].values())
