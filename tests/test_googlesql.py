"""The pipeline's SQL against Google's own GoogleSQL analyzer and reference implementation.

The emulator is DuckDB underneath and accepts SQL BigQuery refuses, so every statement
the pipeline sent during the session (recorded at dag_utils.bigquery by conftest) is
analyzed as BigQuery would: the prod profile's table ids, BigQuery's language options,
the parameters' real types, scripts statement by statement. The values the pipeline
stores or decides on are compared between the emulator and the reference implementation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import env
from dag_utils import sql, tables
from tests.bigquery_capture import SentLoad, SentToBigQuery
from tools.googlesql import (
    GoogleSql,
    GoogleSqlError,
    parameter_type,
    scans_without_partition_filter,
)

PROD = f"{env.PROFILES['prod']['GCP_PROJECT']}.{env.PROFILES['prod']['BQ_DATASET']}"
RAW, AUDIT, DASHBOARD = (
    f"{PROD}.{spec.name}" for spec in (tables.RAW, tables.AUDIT, tables.DASHBOARD)
)
# The tables BigQuery refuses to scan without a partition filter, and their partition column.
PARTITION_FILTERED = {
    f"{PROD}.{spec.name}": spec.partition_field
    for spec in (tables.RAW, tables.AUDIT, tables.DASHBOARD)
    if spec.require_partition_filter
}
STAGING = f"{PROD}.{env.STAGING_TABLE_PREFIX}0123456789abcdef"
STAGING_ID = re.compile(
    rf"{re.escape(PROD)}\.{re.escape(env.STAGING_TABLE_PREFIX)}[0-9a-f]{{16}}(?:_\d+)?"
)
STAGING_HASH = re.compile(rf"{re.escape(env.STAGING_TABLE_PREFIX)}[0-9a-f]{{16}}")
# https://cloud.google.com/bigquery/docs/reference/standard-sql/lexical#reserved_keywords
_KEYWORDS = """
ALL AND ANY ARRAY AS ASC ASSERT_ROWS_MODIFIED AT BETWEEN BY CASE CAST COLLATE CONTAINS CREATE
CROSS CUBE CURRENT DEFAULT DEFINE DESC DISTINCT ELSE END ENUM ESCAPE EXCEPT EXCLUDE EXISTS
EXTRACT FALSE FETCH FOLLOWING FOR FROM FULL GROUP GROUPING GROUPS HASH HAVING IF IGNORE IN
INNER INTERSECT INTERVAL INTO IS JOIN LATERAL LEFT LIKE LIMIT LOOKUP MERGE NATURAL NEW NO NOT
NULL NULLS OF ON OR ORDER OUTER OVER PARTITION PRECEDING PROTO QUALIFY RANGE RECURSIVE RESPECT
RIGHT ROLLUP ROWS SELECT SET SOME STRUCT TABLESAMPLE THEN TO TREAT TRUE UNBOUNDED UNION UNNEST
USING WHEN WHERE WINDOW WITH WITHIN"""
RESERVED = set(_KEYWORDS.split())


def catalog(*texts: str) -> dict[str, tuple]:
    """The prod tables from tables.py, and each staging table the texts name."""
    found = {
        RAW: tables.RAW.schema,
        AUDIT: tables.AUDIT.schema,
        DASHBOARD: tables.DASHBOARD.schema,
        STAGING: tables.RAW_STAGING_SCHEMA,
        f"{STAGING}_0": tables.RAW_STAGING_SCHEMA,
    }
    for text in texts:
        found |= dict.fromkeys(STAGING_ID.findall(text), tables.RAW_STAGING_SCHEMA)
    return found


def as_prod(text: str) -> str:
    """A statement as it is sent in prod: this session's table ids become prod's, and each
    run's staging hash one hash (staging tables differ only in name: one analysis is all)."""
    text = text.replace(f"{env.GCP_PROJECT}.{env.BQ_DATASET}.", f"{PROD}.")
    return STAGING_HASH.sub(STAGING.rsplit(".", 1)[1], text)


def load_statement(load: SentLoad) -> str:
    """A load job as the GoogleSQL statement that does the same (LOAD DATA)."""
    columns = ", ".join(
        f"{f.name} {f.field_type}{' NOT NULL' if f.mode == 'REQUIRED' else ''}" for f in load.schema
    )
    return (
        f"LOAD DATA OVERWRITE `{as_prod(load.table)}` ({columns})\n"
        "FROM FILES (format = 'PARQUET', uris = ['gs://staging/file.parquet'])"
    )


def pipeline_statements() -> dict[str, str]:
    """sql.py's statements by name (its fragments, such as LOST_SAMPLE, are not statements)."""
    starts = ("SELECT", "WITH", "BEGIN", "CREATE", "INSERT", "DELETE", "MERGE", "UPDATE")
    statements = {
        name: text
        for name, text in vars(sql).items()
        if name.isupper() and isinstance(text, str) and text.lstrip().startswith(starts)
    }
    del statements["RULE_FINDINGS"]  # a frame: each rule kind fills it into a statement
    for kind in sql.RULE_BAD_MINUTES:
        statements[f"RULE_FINDINGS[{kind}]"] = sql.rule_findings(kind)
    return statements


def template(text: str) -> re.Pattern[str]:
    """What a statement of sql.py looks like once its {placeholders} are filled."""
    return re.compile(re.sub(r"\\\{\w+\\\}", ".+?", re.escape(text)), re.DOTALL)


@pytest.fixture(scope="module")
def emulator(bq_proxy):
    from dag_utils import bigquery

    return bigquery.client()


@pytest.fixture(scope="module")
def googlesql() -> Iterator[GoogleSql]:
    analyzer = GoogleSql(catalog())
    yield analyzer
    analyzer.close()


def test_aliases_are_never_reserved_words() -> None:
    """A cheap guard in front of the analyzer: `AS rows` parses in DuckDB, not in BigQuery."""
    aliases = {
        (name, alias)
        for name, text in pipeline_statements().items()
        for alias in re.findall(r"\bAS\s+([A-Za-z_]\w*)\b(?!\s*<)", text, re.IGNORECASE)
    }
    assert aliases, "no alias found: the pattern is broken"
    assert sorted((n, a) for n, a in aliases if a.upper() in RESERVED) == []


def test_the_audit_table_is_read_and_deleted_by_its_partition_column() -> None:
    reads = [
        (name, text[m.end() :].split(";")[0])
        for name, text in pipeline_statements().items()
        for m in re.finditer(r"FROM `\{audit\}`", text)
    ]
    assert reads
    pruned = re.compile(r"\bwindow_start\s*(=|>=|>|<=|<|BETWEEN)\s*@")  # by a parameter
    assert [name for name, rest in reads if not pruned.search(rest)] == []


@pytest.mark.parametrize(
    ("accepted", "refused"),
    [
        ("SELECT CAST(x AS INT64) AS n FROM UNNEST(['1']) AS x",
         "SELECT x::INT64 AS n FROM UNNEST(['1']) AS x"),
        ("SELECT SAFE_CAST(x AS INT64) AS n FROM UNNEST(['1']) AS x",
         "SELECT TRY_CAST(x AS INT64) AS n FROM UNNEST(['1']) AS x"),
        ("SELECT LOWER(domain) LIKE 'a%' AS a FROM `{raw}` WHERE TRUE",
         "SELECT domain ILIKE 'a%' AS a FROM `{raw}` WHERE TRUE"),
        ("SELECT COUNT(*) AS row_count FROM `{raw}`", "SELECT COUNT(*) AS rows FROM `{raw}`"),
        ("SELECT 1 AS n FROM `{raw}` WHERE TO_JSON_STRING(errors) = '{{}}'",
         "SELECT 1 AS n FROM `{raw}` WHERE errors = JSON '{{}}'"),
        ("INSERT INTO `{audit}` (run_id, window_start, window_end, lost_sample, published_at)\n"
         "VALUES ('r', @at, @at, PARSE_JSON('[]'), @at)",
         "INSERT INTO `{audit}` (run_id, window_start, window_end, lost_sample, published_at)\n"
         "VALUES ('r', @at, @at, '[]', @at)"),
        ("DELETE FROM `{raw}` WHERE minute < @at",
         "DELETE FROM `{raw}` WHERE minute < @at THEN RETURN domain"),
    ],
)  # fmt: skip
def test_googlesql_as_set_up_refuses_what_bigquery_refuses(
    googlesql: GoogleSql, accepted: str, refused: str
) -> None:
    """Each negative control has a twin BigQuery accepts, so refusing everything fails."""
    params = {"at": parameter_type(_parameter("at", datetime(2026, 11, 23, tzinfo=UTC)))}
    names = {"raw": RAW, "audit": AUDIT}
    assert googlesql.analyze_script(accepted.format(**names), params) == 1
    with pytest.raises(GoogleSqlError):
        googlesql.analyze_script(refused.format(**names), params)


def test_the_raw_and_dashboard_tables_require_a_partition_filter() -> None:
    assert PARTITION_FILTERED == {RAW: "minute", DASHBOARD: "minute_utc"}


@pytest.mark.parametrize(
    ("filtered", "unfiltered"),
    [
        ("SELECT * FROM `{raw}` WHERE minute >= @at",
         "SELECT * FROM `{raw}`"),
        ("SELECT * FROM `{raw}` WHERE domain = 'a' AND minute < @at",
         "SELECT * FROM `{raw}` WHERE domain = 'a'"),
        ("SELECT * FROM `{raw}` WHERE minute >= @at AND domain = 'a'",
         "SELECT * FROM `{raw}` WHERE minute >= @at OR domain = 'a'"),
        ("SELECT * FROM `{raw}` WHERE minute BETWEEN @at AND TIMESTAMP_ADD(@at, INTERVAL 1 DAY)",
         "SELECT * FROM `{raw}` WHERE TIMESTAMP_TRUNC(minute, DAY) >= @at"),
        ("SELECT a.domain FROM `{dashboard}` AS a JOIN `{dashboard}` AS b USING (domain)\n"
         "WHERE a.minute_utc >= @at AND b.minute_utc >= @at",
         "SELECT a.domain FROM `{dashboard}` AS a JOIN `{dashboard}` AS b USING (domain)\n"
         "WHERE a.minute_utc >= @at"),
        ("SELECT 1 AS n FROM `{audit}` WHERE EXISTS (\n"
         "  SELECT 1 FROM `{raw}` AS r WHERE r.minute = window_start AND r.minute >= @at)",
         "SELECT 1 AS n FROM `{audit}` WHERE EXISTS (\n"
         "  SELECT 1 FROM `{raw}` AS r WHERE r.minute = window_start)"),
        ("DELETE FROM `{dashboard}` WHERE minute_utc < @at",
         "DELETE FROM `{dashboard}` WHERE domain = 'a'"),
        ("INSERT INTO `{raw}` (minute, domain, complete, run_id, fetched_at)\n"
         "SELECT minute, domain, complete, run_id, fetched_at FROM `{raw}` WHERE minute < @at",
         "INSERT INTO `{raw}` (minute, domain, complete, run_id, fetched_at)\n"
         "SELECT minute, domain, complete, run_id, fetched_at FROM `{raw}`"),
    ],
)  # fmt: skip
def test_a_scan_of_raw_or_dashboard_needs_a_filter_that_can_eliminate_partitions(
    googlesql: GoogleSql, filtered: str, unfiltered: str
) -> None:
    """Negative controls of the partition filter check the sent statements pass: the emulator
    (DuckDB) reads every row either way."""
    params = {"at": parameter_type(_parameter("at", datetime(2026, 11, 23, tzinfo=UTC)))}
    names = {"raw": RAW, "audit": AUDIT, "dashboard": DASHBOARD}
    (statement,) = googlesql.resolve_script(filtered.format(**names), params)
    assert scans_without_partition_filter(statement, PARTITION_FILTERED) == []
    (statement,) = googlesql.resolve_script(unfiltered.format(**names), params)
    assert scans_without_partition_filter(statement, PARTITION_FILTERED) != []


def test_a_script_is_analyzed_statement_by_statement(googlesql: GoogleSql) -> None:
    script = "BEGIN TRANSACTION;\nSELECT 1 AS a;\nSELECT 2 AS b;\nCOMMIT TRANSACTION;\n"
    assert googlesql.analyze_script(script, {}) == 4
    with pytest.raises(GoogleSqlError, match=r"statement 3: .*ROWS"):
        googlesql.analyze_script(script.replace("AS b", "AS rows"), {})


def test_every_statement_the_pipeline_sent_is_googlesql(
    sent_to_bigquery: SentToBigQuery,
) -> None:
    """Runs last (conftest orders it), over what the session's integration tests sent."""
    sent = sent_to_bigquery
    unsent = [
        name
        for name, text in pipeline_statements().items()
        if not any(template(text).fullmatch(s.sql) for s in sent.statements)
    ]
    assert not unsent, (
        f"never sent in this session: {unsent}. Run this test with the integration tests "
        "(tests/test_raw_ingest_dag.py, tests/test_transform_alert_dags.py), or the whole suite."
    )
    statements = {(as_prod(s.sql), _types(s.parameters)): s.parameters for s in sent.statements}
    loads = {load_statement(load) for load in sent.loads}
    analyzer = GoogleSql(catalog(*(text for text, _ in statements), *loads))
    refused: dict[str, str] = {}
    try:
        for (text, _), parameters in statements.items():
            try:
                resolved = analyzer.resolve_script(
                    text, {p.name: parameter_type(p) for p in parameters}
                )
            except GoogleSqlError as error:
                refused[text.strip()] = str(error)
                continue
            for number, statement in enumerate(resolved, 1):
                if unfiltered := scans_without_partition_filter(statement, PARTITION_FILTERED):
                    refused[text.strip()] = (
                        f"statement {number}: reads {unfiltered} without a partition filter"
                    )
        for text in loads:
            try:
                analyzer.analyze_script(text, {})
            except GoogleSqlError as error:
                refused[text] = str(error)
    finally:
        analyzer.close()
    report = "\n\n".join(f"{error}\n{text}" for text, error in refused.items())
    assert not refused, f"{len(refused)} statements BigQuery would refuse:\n\n{report}"


def _types(parameters: tuple[Any, ...]) -> tuple[tuple[str, bytes], ...]:
    """What tells two sendings of a statement apart for the analyzer: its parameters' types."""
    return tuple((p.name, parameter_type(p).SerializeToString()) for p in parameters)


def _parameter(name: str, value: Any) -> Any:
    from dag_utils import bigquery

    return bigquery._parameter(name, value)


# --- the same values in the emulator and in GoogleSQL's reference implementation -----------

METRIC_JSON = [
    '{"t": {"m": 1234}}',
    '{"t": {"m": 1234.0}}',
    '{"t": {"m": 1.5e9}}',
    '{"t": {"m": 1234.5}}',
    '{"t": {"m": 0}}',
    '{"t": {"m": 0.000123}}',
    '{"t": {"m": 16460905.2}}',
    '{"t": {"m": 9007199254740992}}',  # 2**53 (9 PB a minute): above, the emulator rounds
    '{"t": {"m": null}}',
    '{"t": {}}',
    '{"t": null}',
    "{}",
]
MINUTES = ["2026-11-23 10:00:00+00", "2026-11-23 14:59:00+00", "2026-11-23 15:00:00+00"]
LOST = [("b.example.net", 60), ('quote"double.example.net', 0), ("도메인.한국", 0)]


def _lost_sample(rows: list[tuple[str, int]]) -> str:
    structs = ", ".join(
        f"STRUCT('{d}' AS domain, TIMESTAMP_SECONDS({1795428000 + m}) AS minute)" for d, m in rows
    )
    values = f"[{structs}]" if rows else "ARRAY<STRUCT<domain STRING, minute TIMESTAMP>>[]"
    return f"(SELECT {sql.LOST_SAMPLE} FROM UNNEST({values}))"


DIFFERENTIAL = [
    *(sql.typed_metric(kind, f"PARSE_JSON('{doc}')", "t", "m")
      for kind in ("INT64", "FLOAT64") for doc in METRIC_JSON),
    *(f"DATETIME(TIMESTAMP '{m}', '{env.DASHBOARD_TIMEZONE}')" for m in MINUTES),
    *(f"UNIX_SECONDS(TIMESTAMP '{m}')" for m in MINUTES),
    _lost_sample(LOST),
    _lost_sample([(f"d{i:02d}.example.net", 60 * i) for i in range(25)]),
    _lost_sample([]),
    "UNIX_SECONDS(CAST(NULL AS TIMESTAMP))",
    f"DATETIME(CAST(NULL AS TIMESTAMP), '{env.DASHBOARD_TIMEZONE}')",
]  # fmt: skip


def test_the_emulator_and_googlesql_give_the_same_values(emulator, googlesql: GoogleSql) -> None:
    """One emulator query for all the expressions (each its own column), each evaluated by
    GoogleSQL's reference implementation."""
    columns = ",\n".join(f"{expression} AS v{i}" for i, expression in enumerate(DIFFERENTIAL))
    (row,) = emulator.query_and_wait(f"SELECT {columns}")
    values = [(e, row[f"v{i}"], googlesql.evaluate(e)) for i, e in enumerate(DIFFERENTIAL)]
    assert [v for v in values if v[1] != v[2]] == [], "(expression, emulator, GoogleSQL)"


def test_integer_metrics_are_whole_numbers_however_written_and_null_for_a_fraction(
    googlesql: GoogleSql,
) -> None:
    def int64(doc: str) -> Any:
        return googlesql.evaluate(sql.typed_metric("INT64", f"PARSE_JSON('{doc}')", "t", "m"))

    assert [int64(d) for d in METRIC_JSON[:5]] == [1234, 1234, 1_500_000_000, None, 0]


def test_googlesql_refuses_nan_in_json_so_the_pipeline_never_sends_it(
    googlesql: GoogleSql,
) -> None:
    with pytest.raises(GoogleSqlError, match="PARSE_JSON"):
        googlesql.evaluate("""PARSE_JSON('{"a": NaN}')""")
