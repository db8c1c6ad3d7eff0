"""Pure pieces of the raw ingest: windows, late and lost ranges, merging a refetch."""

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pendulum
import pytest

from dag_utils.bigquery import table_id
from dag_utils.cdn_api import DomainMinute
from dag_utils.raw_ingest import base_url, shards_of, staging_table, write_staging_file
from dag_utils.windows import Window, window_for

LAG = timedelta(minutes=5)
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_a_window_is_the_data_interval_shifted_back_by_the_lag() -> None:
    window = window_for(T0, T0 + timedelta(minutes=5), LAG)
    assert window == Window(T0 - LAG, T0)
    assert window.minutes == [int((T0 - LAG).timestamp()) + 60 * i for i in range(5)]


def test_airflows_pendulum_interval_gives_the_same_utc_window_in_any_local_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = pendulum.instance(T0).in_timezone("America/New_York")  # as Airflow may pass it
    monkeypatch.setenv("TZ", "Asia/Seoul")  # a developer's machine, not UTC
    time.tzset()
    try:
        window = window_for(start, start + timedelta(minutes=5), LAG)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert window == Window(T0 - LAG, T0)
    assert window.start.utcoffset() == timedelta(0)
    assert window.minutes[0] == int((T0 - LAG).timestamp())


def test_consecutive_runs_tile_time_without_gaps_or_overlaps() -> None:
    windows = [
        window_for(T0 + timedelta(minutes=5 * i), T0 + timedelta(minutes=5 * (i + 1)), LAG)
        for i in range(24)
    ]
    minutes = [m for w in windows for m in w.minutes]
    assert minutes == sorted(set(minutes))
    assert minutes == list(range(minutes[0], minutes[-1] + 60, 60))


def test_every_minute_passes_the_horizon_in_exactly_one_run() -> None:
    horizon = timedelta(minutes=15)
    windows = [
        Window(T0 + timedelta(minutes=5 * i), T0 + timedelta(minutes=5 * (i + 1)))
        for i in range(12)
    ]
    lost = [w.lost_range(horizon) for w in windows]
    assert all(a[1] == b[0] for a, b in pairwise(lost))
    # window 0 is fetched again by windows 1-3, and reported lost by window 4
    assert windows[3].late_range(horizon) == (windows[0].start, windows[3].start)
    assert windows[4].lost_range(horizon) == (windows[0].start, windows[0].end)


def test_a_window_needs_whole_minutes() -> None:
    with pytest.raises(ValueError, match="whole minutes"):
        window_for(T0, T0 + timedelta(seconds=90), LAG)
    with pytest.raises(ValueError, match="whole minutes"):
        window_for(T0, T0, LAG)


def test_connection_parts_make_the_base_url() -> None:
    assert base_url("http://127.0.0.1:8700/") == "http://127.0.0.1:8700"
    assert base_url("api.vendor.example", "https", 8443) == "https://api.vendor.example:8443"
    with pytest.raises(ValueError, match="no host"):
        base_url(None)


@pytest.mark.parametrize(
    ("host", "schema"),
    [
        ("api.vendor.example", "v1"),  # a URI-form secret: its path /v1 became `schema`
        ("ftp://api.vendor.example", None),
        ("api.vendor.example", "file"),
    ],
)
def test_a_base_url_that_is_not_http_is_refused_with_the_fix(host: str, schema: str | None) -> None:
    with pytest.raises(ValueError, match=r"only http or https.*JSON form"):
        base_url(host, schema)


def test_table_ids_come_from_configuration_only() -> None:
    assert (
        staging_table("manual__2026-11-23T10:00:00+00:00")
        .split(".")[-1]
        .startswith("_staging_raw_")
    )
    with pytest.raises(ValueError, match="plain BigQuery identifier"):
        table_id("raw`; DROP TABLE x; --")


def test_domains_are_cut_into_shards_in_order_and_a_small_account_is_one_shard() -> None:
    domains = [f"d{i}" for i in range(10)]
    assert shards_of(domains, 4) == [domains[:4], domains[4:8], domains[8:]]
    assert shards_of(domains, 1000) == [domains]
    assert shards_of([], 1000) == [[]]


def test_a_nan_that_reached_the_staging_file_fails_the_task_not_the_publish(tmp_path) -> None:
    """The client nulls them; were one to slip through, BigQuery's PARSE_JSON would refuse
    it in the publishing transaction on every retry."""
    record = DomainMinute("d.example.net", 1795428000, {"traffic": {"bps": float("nan")}})
    with pytest.raises(ValueError, match="not JSON compliant"):
        write_staging_file([record], tmp_path / "staging.parquet", "run")
