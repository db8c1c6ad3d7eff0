"""Fetch one window from the CDN API into a JSON-lines file.

    CDN_API_TOKEN=... python -m dag_utils.cdn_api --base-url URL \\
        --start 2026-11-23T10:00Z --end 2026-11-23T10:05Z --out raw.jsonl

Writes one JSON object per (domain, minute) and prints the run statistics as one
JSON line, last. Exit code 0: every record complete; 3: some incomplete;
2: bad arguments or the API rejected the token; 1: the domain list could not be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

from dag_utils.cdn_api.client import ApiError, AuthError, CdnApiClient, ClientSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


def minute_of(text: str) -> int:
    """Unix seconds of an ISO-8601 time with a zone that falls on a whole minute."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}Z")
    seconds = moment.timestamp()
    if seconds % 60:
        raise argparse.ArgumentTypeError(f"not on a whole minute: {text!r}")
    return int(seconds)


def window_minutes(start: int, end: int) -> list[int]:
    """The minutes of [start, end), in unix seconds."""
    if start % 60 or end % 60 or end <= start:
        raise ValueError("a window is a non-empty range of whole minutes")
    return list(range(start, end, 60))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dag_utils.cdn_api", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--base-url", required=True, help="e.g. https://api.vendor.example")
    parser.add_argument("--start", required=True, type=minute_of, help="first minute, inclusive")
    parser.add_argument("--end", required=True, type=minute_of, help="last minute, exclusive")
    parser.add_argument("--out", required=True, type=Path, help="JSON-lines file to write")
    parser.add_argument("--max-concurrency", type=int, default=ClientSettings.max_concurrency)
    parser.add_argument("--deadline-s", type=float, default=ClientSettings.window_deadline_s)
    args = parser.parse_args(argv)
    if args.end <= args.start:
        parser.error("--end must be after --start")
    if args.max_concurrency < 1:
        parser.error("--max-concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    token = os.environ.get("CDN_API_TOKEN")
    if not token:
        print("error: set CDN_API_TOKEN to the API token", file=sys.stderr)
        return EXIT_USAGE
    settings = dataclasses.replace(
        ClientSettings(), max_concurrency=args.max_concurrency, window_deadline_s=args.deadline_s
    )
    client = CdnApiClient(args.base_url, token, settings)
    partial = args.out.with_name(args.out.name + ".partial")
    try:
        domains = client.list_domains()
        with partial.open("w", encoding="utf-8") as out:
            for record in client.fetch_window(domains, window_minutes(args.start, args.end)):
                out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        partial.replace(args.out)
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        print(f"error: could not read the domain list: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        partial.unlink(missing_ok=True)
        print(json.dumps(client.summary()), flush=True)
    return EXIT_OK if client.stats.incomplete == 0 else EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
