"""`make deploy` against gcp-storage-emulator: exactly the bundle, and nothing else touched."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.deploy import MANIFEST, bundle_files, deploy, secrets_in
from tools.local_servers import REPO, GcsEmulator

BUCKET = "composer-test-bucket"
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
