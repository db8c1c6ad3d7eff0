"""`make deploy ENV=<env> BUCKET=gs://<bucket> [DRY_RUN=1]`: the bundle into a Composer bucket.

Checks first: ruff, the DAG folder parses alone for that environment (no network, no
metadata DB), and no secret in any bundle file. Then it syncs exactly the bundle
(dags/, dag_utils/ with every sub-package, env.py, .airflowignore) into the bucket's
dags/ folder. It uploads files whose content changed, and deletes files that an earlier
deploy uploaded but the bundle no longer has. A manifest object records what it
deployed; nothing else in the bucket is ever touched. With --dry-run it lists the
uploads and deletions and changes nothing. The same bundle serves every environment:
the Composer environment's CDN_ENV variable selects the profile in env.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tools.dag_check import parse_alone
from tools.local_servers import REPO

BUNDLE = ("dags", "dag_utils", "env.py", ".airflowignore")
PREFIX = "dags/"  # Composer's DAG folder in its bucket
MANIFEST = f"{PREFIX}.cdn-bundle-manifest.json"
SECRET_PATTERNS = {
    "Slack token": re.compile(r"xox[abposr]-[0-9A-Za-z-]{10,}"),
    "Google API key": re.compile(r"AIza[0-9A-Za-z_-]{35}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "service account key": re.compile(r'"private_key_id"\s*:'),
    "credentials in a URL": re.compile(r"https?://[^/\s:@'\"]+:[^/\s@'\"]+@"),
}


@dataclass
class Plan:
    uploads: list[str] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def bundle_files(root: Path = REPO) -> dict[str, Path]:
    """Object name in the bucket -> local file, for every file of the bundle."""
    files: dict[str, Path] = {}
    for entry in BUNDLE:
        path = root / entry
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in candidates:
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                files[PREFIX + file.relative_to(root).as_posix()] = file
    return files


def secrets_in(files: dict[str, Path]) -> list[str]:
    found = []
    for name, path in files.items():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            found += [
                f"{name}:{number}: {kind}" for kind, p in SECRET_PATTERNS.items() if p.search(line)
            ]
    return found


def check(root: Path, environment: str, files: dict[str, Path]) -> list[str]:
    """Everything that must hold before a deploy; empty when it may go ahead."""
    problems = secrets_in(files)
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *(e for e in BUNDLE if e != ".airflowignore")],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if lint.returncode:
        problems.append("ruff: " + lint.stdout.strip()[-1500:])
    parsed = parse_alone(root / "dags", {"CDN_ENV": environment})
    problems += [f"DAG import error in {path}: {error}" for path, error in parsed["errors"].items()]
    if not parsed["dags"]:
        problems.append("the DAG folder has no DAG")
    return problems


def storage_client():
    """google-cloud-storage; against gcp-storage-emulator when STORAGE_EMULATOR_HOST is set."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="local", credentials=AnonymousCredentials())
    return storage.Client()


def plan(bucket, files: dict[str, Path]) -> Plan:
    blob = bucket.get_blob(MANIFEST)
    deployed = set(json.loads(blob.download_as_bytes())["files"]) if blob else set()
    result = Plan(deletions=sorted(deployed - set(files)))
    for name, path in sorted(files.items()):
        remote = bucket.get_blob(name)
        if remote is not None and remote.md5_hash == _md5(path):
            result.unchanged.append(name)
        else:
            result.uploads.append(name)
    return result


def apply(bucket, files: dict[str, Path], steps: Plan, environment: str) -> None:
    for name in steps.uploads:
        bucket.blob(name).upload_from_filename(str(files[name]))
    for name in steps.deletions:
        existing = bucket.get_blob(name)
        if existing is not None:
            existing.delete()
    manifest = {"environment": environment, "files": sorted(files)}
    bucket.blob(MANIFEST).upload_from_string(json.dumps(manifest, indent=1), "application/json")


def deploy(
    bucket_url: str, environment: str, dry_run: bool, root: Path = REPO, checks: bool = True
) -> Plan:
    match = re.fullmatch(r"gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])/?", bucket_url)
    if not match:
        raise SystemExit(f"BUCKET must look like gs://<bucket>, not {bucket_url!r}")
    files = bundle_files(root)
    if checks:
        problems = check(root, environment, files)
        if problems:
            raise SystemExit("not deploying:\n  " + "\n  ".join(problems))
    bucket = storage_client().bucket(match.group(1))
    steps = plan(bucket, files)
    if not dry_run:
        apply(bucket, files, steps, environment)
    return steps


def _md5(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()  # noqa: S324 - GCS's own checksum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, help="the env.py profile: local, dev or prod")
    parser.add_argument("--bucket", required=True, help="gs://<the Composer environment's bucket>")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    steps = deploy(args.bucket, args.env, args.dry_run)
    verb = "would" if args.dry_run else "did"
    for name in steps.uploads:
        print(f"{verb} upload  {args.bucket.rstrip('/')}/{name}")
    for name in steps.deletions:
        print(f"{verb} delete  {args.bucket.rstrip('/')}/{name}")
    outcome = "dry run: nothing changed" if args.dry_run else "done"
    print(
        f"{len(steps.uploads)} uploads, {len(steps.deletions)} deletions, "
        f"{len(steps.unchanged)} unchanged ({outcome})"
    )


if __name__ == "__main__":
    main()
