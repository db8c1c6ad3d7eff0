"""`make deploy ENV=<env> BUCKET=gs://<bucket> COMPOSER=<name> LOCATION=<region> [DRY_RUN=1]`.

Checks first: the target Composer environment runs a supported build and has CDN_ENV set
to ENV (read with `gcloud composer environments describe`); ruff; no secret in any bundle
file; and the exact bucket layout, staged in a temporary folder, parses as Composer's DAG
processor parses it (Airflow's bundle DAG bag, nothing on PYTHONPATH, the .airflowignore
honoured). Then it syncs exactly the bundle (dags/, dag_utils/ with every sub-package,
env.py, .airflowignore) into the bucket's dags/ folder: uploads what changed, deletes
what an earlier deploy uploaded and the bundle no longer has, merges its lines into an
.airflowignore already there, and refuses to overwrite a dag_utils/ or env.py that its
manifest did not put there. With --dry-run it lists the changes and makes none.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tools.dag_check import parse_bundle
from tools.local_servers import REPO

BUNDLE = ("dags", "dag_utils", "env.py", ".airflowignore")
PREFIX = "dags/"  # Composer's DAG folder in its bucket
MANIFEST = f"{PREFIX}.cdn-bundle-manifest.json"
IGNORE = f"{PREFIX}.airflowignore"
OURS_ONLY = (f"{PREFIX}dag_utils/", f"{PREFIX}env.py")  # never share these with another bundle
BEGIN, END = "# BEGIN cdn bundle (make deploy)", "# END cdn bundle"
# Airflow builds the bundle is tested on (README "Support matrix"). 3.0/3.1 lack Task SDK
# APIs the DAGs use (ti.get_dag, airflow.sdk.CronDataIntervalTimetable...).
SUPPORTED_AIRFLOW = ((3, 2, 2), (3, 3, 1))
MIN_IMAGE = "composer-3-airflow-3.2.2"
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


def merged_ignore(existing: str | None, ours: str) -> str:
    """Our .airflowignore lines, in a marked block, replacing our earlier block in an
    .airflowignore that other bundles in the bucket may share; their lines are kept."""
    block = f"{BEGIN}\n{ours.strip()}\n{END}\n"
    if not existing:
        return block
    kept = re.sub(rf"{re.escape(BEGIN)}\n.*?{re.escape(END)}\n?", "", existing, flags=re.S)
    return (kept.rstrip("\n") + "\n" + block) if kept.strip() else block


def image_problems(image_version: str) -> list[str]:
    """Why this bundle must not go to an environment of this Composer image; [] if it may."""
    match = re.fullmatch(
        r"composer-(\d+)(?:\.[\d.]+)?-airflow-(\d+)\.(\d+)\.(\d+)(-build\.\d+)?", image_version
    )
    if not match:
        return [f"cannot read the Composer image version {image_version!r}"]
    composer, airflow = int(match.group(1)), tuple(int(g) for g in match.group(2, 3, 4))
    if composer < 3 or airflow < SUPPORTED_AIRFLOW[0]:
        return [
            f"the environment runs {image_version}: this bundle needs Composer 3 with Airflow "
            f"3.2.2 or later ({MIN_IMAGE}-build.N); an Airflow 2 environment cannot be "
            "upgraded in place, create a new one (README 'Support matrix')"
        ]
    if airflow not in SUPPORTED_AIRFLOW:
        tested = ", ".join(".".join(map(str, v)) for v in SUPPORTED_AIRFLOW)
        return [
            f"the environment runs Airflow {'.'.join(map(str, airflow))}, not tested "
            f"(tested: {tested}); pass --allow-untested-airflow to deploy anyway"
        ]
    return []


def environment_problems(described: dict, environment: str, bucket_url: str) -> list[str]:
    """The target environment, as `gcloud composer environments describe` gives it, checked
    against what is being deployed: its image, its CDN_ENV and CDN_START_DATE, its bucket."""
    software = described.get("config", {}).get("softwareConfig", {})
    variables = software.get("envVariables", {})
    problems = image_problems(software.get("imageVersion", ""))
    if variables.get("CDN_ENV") != environment:
        problems.append(
            f"the environment's CDN_ENV is {variables.get('CDN_ENV')!r}, not {environment!r}: "
            "deploying would run another profile than the one checked"
        )
    if not variables.get("CDN_START_DATE"):
        problems.append("the environment has no CDN_START_DATE: the DAGs would not load")
    prefix = described.get("config", {}).get("dagGcsPrefix", "")
    if prefix and not prefix.startswith(bucket_url.rstrip("/") + "/"):
        problems.append(f"the environment's DAG folder is {prefix}, not in {bucket_url}")
    return problems


def describe_environment(name: str, location: str) -> dict:
    """The environment as Composer describes it (needs gcloud and composer.environments.get)."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise SystemExit("gcloud is needed to read the target environment (Google Cloud SDK)")
    done = subprocess.run(
        [gcloud, "composer", "environments", "describe", name, "--location", location,
         "--format=json(config.softwareConfig.imageVersion,config.softwareConfig.envVariables,"
         "config.dagGcsPrefix)"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"gcloud composer environments describe {name} failed: {done.stderr}")
    return json.loads(done.stdout)


def secrets_in(files: dict[str, Path]) -> list[str]:
    found = []
    for name, path in files.items():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            found += [
                f"{name}:{number}: {kind}" for kind, p in SECRET_PATTERNS.items() if p.search(line)
            ]
    return found


def staged_parse(contents: dict[str, bytes], settings: dict[str, str]) -> dict:
    """Write the bucket's dags/ folder as it will be into a temporary folder and parse it."""
    with tempfile.TemporaryDirectory(prefix="cdn-deploy-") as tmp:
        folder = Path(tmp) / "dags"
        for name, content in contents.items():
            target = folder / name.removeprefix(PREFIX)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return parse_bundle(folder, settings)


def check(
    root: Path, files: dict[str, Path], contents: dict[str, bytes], settings: dict
) -> list[str]:
    """Everything about the bundle itself that must hold before a deploy."""
    problems = secrets_in(files)
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *(e for e in BUNDLE if e != ".airflowignore")],
        cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if lint.returncode:
        problems.append("ruff: " + lint.stdout.strip()[-1500:])
    parsed = staged_parse(contents, settings)
    problems += [f"DAG import error in {path}: {error}" for path, error in parsed["errors"].items()]
    if not parsed["dags"]:
        problems.append("the staged bucket folder has no DAG")
    return problems


def storage_client():
    """google-cloud-storage; against gcp-storage-emulator when STORAGE_EMULATOR_HOST is set."""
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="local", credentials=AnonymousCredentials())
    return storage.Client()


def deployed(bucket) -> set[str]:
    blob = bucket.get_blob(MANIFEST)
    return set(json.loads(blob.download_as_bytes())["files"]) if blob else set()


def contents_for(bucket, files: dict[str, Path]) -> dict[str, bytes]:
    """What each bundle object will hold: the files, with the bucket's .airflowignore merged."""
    contents = {name: path.read_bytes() for name, path in files.items()}
    if IGNORE in contents:
        existing = bucket.get_blob(IGNORE)
        current = existing.download_as_bytes().decode() if existing else None
        contents[IGNORE] = merged_ignore(current, contents[IGNORE].decode()).encode()
    return contents


def foreign(bucket, files: dict[str, Path], ours: set[str]) -> list[str]:
    """Objects in our packages (or that we would overwrite) that no deploy of ours made."""
    names = {b.name for b in bucket.client.list_blobs(bucket, prefix=PREFIX)}
    clash = {n for n in names if n.startswith(OURS_ONLY) or (n in files and n != IGNORE)}
    return sorted(clash - ours)


def plan(bucket, contents: dict[str, bytes], ours: set[str]) -> Plan:
    result = Plan(deletions=sorted(ours - set(contents)))
    for name, content in sorted(contents.items()):
        remote = bucket.get_blob(name)
        if remote is not None and remote.md5_hash == _md5(content):
            result.unchanged.append(name)
        else:
            result.uploads.append(name)
    return result


def apply(bucket, contents: dict[str, bytes], steps: Plan, environment: str) -> None:
    for name in steps.uploads:
        bucket.blob(name).upload_from_string(contents[name])
    for name in steps.deletions:
        existing = bucket.get_blob(name)
        if existing is not None:
            existing.delete()
    manifest = {"environment": environment, "files": sorted(contents)}
    bucket.blob(MANIFEST).upload_from_string(json.dumps(manifest, indent=1), "application/json")


def deploy(
    bucket_url: str,
    environment: str,
    dry_run: bool,
    root: Path = REPO,
    checks: bool = True,
    described: dict | None = None,
    allow_untested: bool = False,
) -> Plan:
    """`described`: the target environment as `describe_environment` returns it; None only
    for a bucket that is no Composer environment's (ENV=local, the tests)."""
    match = re.fullmatch(r"gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])/?", bucket_url)
    if not match:
        raise SystemExit(f"BUCKET must look like gs://<bucket>, not {bucket_url!r}")
    settings = {"CDN_ENV": environment}
    if described is not None:
        problems = environment_problems(described, environment, bucket_url)
        if allow_untested:
            problems = [p for p in problems if "not tested" not in p]
        if problems:
            raise SystemExit("not deploying:\n  " + "\n  ".join(problems))
        variables = described["config"]["softwareConfig"].get("envVariables", {})
        settings |= {k: v for k, v in variables.items() if k.startswith("CDN_")}
        settings["COMPOSER_ENVIRONMENT"] = "deploy-check"  # env.py's Composer guards apply
    files = bundle_files(root)
    bucket = storage_client().bucket(match.group(1))
    ours = deployed(bucket)
    if clash := foreign(bucket, files, ours):
        raise SystemExit(
            "not deploying: the bucket has files this deploy did not put there and would "
            "overwrite or mix with (another bundle's dag_utils/ or env.py?):\n  "
            + "\n  ".join(clash)
        )
    contents = contents_for(bucket, files)
    if checks:
        problems = check(root, files, contents, settings)
        if problems:
            raise SystemExit("not deploying:\n  " + "\n  ".join(problems))
    steps = plan(bucket, contents, ours)
    if not dry_run:
        apply(bucket, contents, steps, environment)
    return steps


def _md5(content: bytes) -> str:
    return base64.b64encode(hashlib.md5(content).digest()).decode()  # noqa: S324 - GCS's own checksum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, help="the env.py profile: local, dev or prod")
    parser.add_argument("--bucket", required=True, help="gs://<the Composer environment's bucket>")
    parser.add_argument("--composer", help="the Composer environment's name (not for local)")
    parser.add_argument("--location", help="the Composer environment's region")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--allow-untested-airflow", action="store_true")
    args = parser.parse_args()
    if args.env != "local" and not (args.composer and args.location):
        parser.error("COMPOSER=<environment> and LOCATION=<region> are needed for dev and prod")
    described = describe_environment(args.composer, args.location) if args.composer else None
    steps = deploy(
        args.bucket, args.env, args.dry_run, described=described,
        allow_untested=args.allow_untested_airflow,
    )  # fmt: skip
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
