"""Parsing of response bodies: by column name, every row, nulls kept, bad bodies refused."""

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from dag_utils.cdn_api.parse import (
    MalformedResponse,
    domain_names,
    parse_body,
    retry_after_seconds,
    rows_by_minute,
    without_nonfinite,
)


def body(metric: list, data: list) -> dict:
    return {"rtcode": "200", "metric": metric, "data": data}


def test_columns_are_matched_by_name_in_any_order_and_extra_columns_kept() -> None:
    rows = rows_by_minute(
        body(["region", "requests", "date", "bps", "bytes"], [["kr", 48211, 1763859600, 1.5, 9]]),
        "traffic",
    )
    assert rows == {1763859600: {"region": "kr", "requests": 48211, "bps": 1.5, "bytes": 9}}


def test_every_row_is_kept_keyed_by_its_date() -> None:
    rows = rows_by_minute(
        body(["date", "hit", "miss", "hit_ratio"], [[120, 1, 2, 0.3], [60, 4, 5, 0.4]]), "cache"
    )
    assert rows == {
        60: {"hit": 4, "miss": 5, "hit_ratio": 0.4},
        120: {"hit": 1, "miss": 2, "hit_ratio": 0.3},
    }


def test_nulls_stay_null_and_empty_data_is_no_rows() -> None:
    rows = rows_by_minute(
        body(["date", "bytes", "bps", "requests"], [[60, None, 1.0, None]]), "traffic"
    )
    assert rows == {60: {"bytes": None, "bps": 1.0, "requests": None}}
    assert rows_by_minute(body(["date", "bytes"], []), "traffic") == {}


@pytest.mark.parametrize(
    ("metric", "data"),
    [
        (["date", "bytes"], [[60]]),  # row shorter than the columns
        (["date", "bytes", "bytes"], [[60, 1, 2]]),  # repeated column
        (["bytes"], [[1]]),  # no date
        (["date", "bytes"], [[61, 1]]),  # not a minute
        (["date", "bytes"], [[60, 1], [60, 2]]),  # repeated minute
        (["date", "bytes"], [[60, -1]]),  # negative
        (["date", "bytes"], [[60, "12"]]),  # a string where a number belongs
        (["date", "bytes"], [[60, True]]),
        (["date", "bytes"], "nope"),
        ("date", [[60]]),
    ],
)
def test_malformed_bodies_are_refused(metric: object, data: object) -> None:
    with pytest.raises(MalformedResponse):
        rows_by_minute({"rtcode": "200", "metric": metric, "data": data}, "traffic")


def test_nan_and_infinity_in_any_column_become_null_and_are_named() -> None:
    raw = b'{"rtcode": "200", "metric": ["date", "bytes", "bps", "requests", "p99"], ' \
          b'"data": [[1763859600, 9, NaN, 5, {"ms": [1.0, -Infinity]}]]}'  # fmt: skip
    (row,) = rows_by_minute(parse_body(raw), "traffic").values()
    assert without_nonfinite(row) == (
        {"bytes": 9, "bps": None, "requests": 5, "p99": None},
        ["bps", "p99"],
    )
    assert without_nonfinite({"bytes": 9, "bps": 1.5}) == ({"bytes": 9, "bps": 1.5}, [])


def test_parse_body_needs_json_with_a_string_rtcode() -> None:
    assert parse_body(json.dumps({"rtcode": "500"}).encode()) == {"rtcode": "500"}
    for raw in (b"<html>502 Bad Gateway</html>", b"[]", b'{"rtcode": 200}'):
        with pytest.raises(MalformedResponse):
            parse_body(raw)


def test_domain_list_keeps_hostile_names_verbatim_and_drops_repeats() -> None:
    names = ["a'b.example", "도메인.한국", "a'b.example"]
    assert domain_names({"data": names}) == ["a'b.example", "도메인.한국"]
    with pytest.raises(MalformedResponse):
        domain_names({"data": ["ok", 3]})


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(later, now=now.timestamp()) == pytest.approx(30)
