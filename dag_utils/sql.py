"""Every SQL statement of the pipeline, named, parameterised, each saying what it guarantees.

Values always travel as query parameters. The only text substituted into a statement is
a table id, and `bigquery.table_id` builds those from configuration and refuses anything
that is not a plain identifier. Nothing the API returns is ever part of SQL text.
"""

import env
from dag_utils.tables import DASHBOARD_METRICS


def typed_metric(kind: str, metrics: str, endpoint: str, metric: str) -> str:
    """The expression of one dashboard column from the raw JSON column `metrics`.

    The same value in BigQuery and the emulator (tests/test_googlesql.py compares them):
    an INT64 metric is any whole JSON number (1234, 1234.0, 1.5e9) and null for a
    fraction (1234.5 is no count; the raw row keeps it); a FLOAT64 metric is any number.
    """
    value = f"JSON_QUERY({metrics}, '$.{endpoint}.{metric}')"
    if kind == "INT64":
        return f"IF(LAX_FLOAT64({value}) = TRUNC(LAX_FLOAT64({value})), LAX_INT64({value}), NULL)"
    if kind == "FLOAT64":
        return f"LAX_FLOAT64({value})"
    raise ValueError(f"no typed metric of kind {kind}")


_TYPED = ",\n       ".join(
    f"{typed_metric(kind, 'metrics', endpoint, metric)} AS {column}"
    for column, endpoint, metric, kind in DASHBOARD_METRICS
)
_COLUMNS = ", ".join(column for column, *_ in DASHBOARD_METRICS)

# Incomplete raw rows of a shard's domains in [@since, @until): what later runs fetch again.
SELECT_INCOMPLETE_RAW = """
SELECT domain, UNIX_SECONDS(minute) AS minute,
       TO_JSON_STRING(metrics) AS metrics, TO_JSON_STRING(errors) AS errors
FROM `{raw}`
WHERE NOT complete AND minute >= @since AND minute < @until AND domain IN UNNEST(@domains)
"""

# Up to 20 lost (domain, minute) of the rows aggregated, as JSON, earliest first.
LOST_SAMPLE = (
    "TO_JSON(ARRAY_AGG(STRUCT(domain AS domain, UNIX_SECONDS(minute) AS minute)\n"
    "                                 ORDER BY minute, domain LIMIT 20))"
)

# One staging table from the shards' staging tables ({shards}: SELECTs joined by UNION ALL,
# built by raw_ingest from this run's own table ids), expiring as they do: a run that
# never publishes leaves nothing behind.
COMBINE_STAGING = """
CREATE OR REPLACE TABLE `{staging}`
OPTIONS (expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL <hours> HOUR)) AS
{shards}
""".replace("<hours>", str(int(env.STAGING_EXPIRATION.total_seconds() // 3600)))

# Publishes one fetch atomically: every staged (domain, minute) replaces its raw row,
# except that a complete row is never replaced by an incomplete one (a rerun during an
# API outage cannot lose data); the run's audit row is written in the same transaction,
# counting the domain-minutes that just passed the late-data horizon still incomplete.
# DELETE + INSERT rather than MERGE: the same guarantee, and the local emulator cannot
# run a MERGE inside a transaction.
PUBLISH_RAW = """
BEGIN TRANSACTION;

DELETE FROM `{raw}` AS target
WHERE target.minute >= @since AND target.minute < @until
  AND EXISTS (
    SELECT 1 FROM `{staging}` AS source
    WHERE source.domain = target.domain AND source.minute = target.minute
      AND (source.complete OR NOT target.complete));

INSERT INTO `{raw}` (minute, domain, metrics, errors, complete, run_id, fetched_at)
SELECT source.minute, source.domain, PARSE_JSON(source.metrics), PARSE_JSON(source.errors),
       source.complete, source.run_id, source.fetched_at
FROM `{staging}` AS source
WHERE NOT EXISTS (
  SELECT 1 FROM `{raw}` AS target
  WHERE target.domain = source.domain AND target.minute = source.minute
    AND target.minute >= @since AND target.minute < @until);

DELETE FROM `{audit}` WHERE window_start = @window_start AND run_id = @run_id;

INSERT INTO `{audit}` (run_id, window_start, window_end, domains, calls, retries, failures,
                       complete, incomplete, refetched, filled, lost, lost_sample,
                       fetch_seconds, client_stats, published_at, refetch_start)
SELECT @run_id, @window_start, @window_end, @domains, @calls, @retries, @failures,
       @complete, @incomplete, @refetched, @filled,
       (SELECT COUNT(*) FROM `{raw}`
        WHERE NOT complete AND minute >= @lost_since AND minute < @lost_until),
       (SELECT <lost_sample>
        FROM `{raw}`
        WHERE NOT complete AND minute >= @lost_since AND minute < @lost_until),
       @fetch_seconds, PARSE_JSON(@client_stats), CURRENT_TIMESTAMP(), @since;

COMMIT TRANSACTION;
""".replace("<lost_sample>", LOST_SAMPLE)

# The audit row of one run, if it was published (its window prunes the partitions).
SELECT_AUDIT_ROW = """
SELECT * FROM `{audit}` WHERE window_start = @window_start AND run_id = @run_id
"""

# Ingest runs published since the dashboard last took them (a rerun's new audit row is
# pending again), within @follow_since: the raw rows they wrote are what the dashboard
# lacks. Each run wrote only rows of [refetch_start, window_end).
SELECT_PENDING_RUNS = """
SELECT run_id, UNIX_SECONDS(COALESCE(refetch_start, window_start)) AS refetch_start,
       UNIX_SECONDS(window_end) AS window_end
FROM `{audit}`
WHERE window_start >= @follow_since AND dashboard_at IS NULL
"""

# Rewrites, atomically and with one set-based pass over the raw rows, the dashboard rows
# of the window and of every raw row the pending runs (@runs) wrote, then marks those
# runs taken. @since/@until bound all of it (the partition filter). Typed column per
# metric (null where the API had none), the minute in UTC and in the dashboard's time
# zone ({timezone}: a checked IANA name from env.py; the emulator does not take it as a
# parameter).
TRANSFORM_WINDOW = """
BEGIN TRANSACTION;

DELETE FROM `{dashboard}` AS target
WHERE target.minute_utc >= @since AND target.minute_utc < @until
  AND ((target.minute_utc >= @window_start AND target.minute_utc < @window_end)
       OR EXISTS (
         SELECT 1 FROM `{raw}` AS source
         WHERE source.minute >= @since AND source.minute < @until
           AND source.run_id IN UNNEST(@runs)
           AND source.domain = target.domain AND source.minute = target.minute_utc));

INSERT INTO `{dashboard}` (minute_utc, minute_local, domain, <columns>,
                           complete, raw_run_id, transformed_at)
SELECT minute, DATETIME(minute, '{timezone}'), domain,
       <typed>,
       complete, run_id, CURRENT_TIMESTAMP()
FROM `{raw}`
WHERE minute >= @since AND minute < @until
  AND ((minute >= @window_start AND minute < @window_end) OR run_id IN UNNEST(@runs));

UPDATE `{audit}` SET dashboard_at = CURRENT_TIMESTAMP()
WHERE window_start >= @follow_since AND run_id IN UNNEST(@runs);

COMMIT TRANSACTION;
""".replace("<columns>", _COLUMNS).replace("<typed>", _TYPED)

# How many dashboard rows the window has, and how many of them are complete.
COUNT_DASHBOARD_WINDOW = """
SELECT COUNT(*) AS row_count, COUNTIF(complete) AS complete FROM `{dashboard}`
WHERE minute_utc >= @window_start AND minute_utc < @window_end
"""

# What is missing among the judged minutes [@judged_start, @judged_end): each domain the
# ingest saw in them or the day before, times each minute, without a complete dashboard
# row. Counts and samples. An empty range judges nothing.
CHECK_WINDOW = """
WITH expected_domains AS (
  SELECT DISTINCT domain FROM `{raw}`
  WHERE minute >= @lookback_start AND minute < @judged_end
),
judged AS (
  SELECT minute FROM UNNEST(GENERATE_TIMESTAMP_ARRAY(
    @judged_start, TIMESTAMP_SUB(@judged_end, INTERVAL 1 MINUTE), INTERVAL 1 MINUTE)) AS minute
),
present AS (
  SELECT domain, minute_utc AS minute FROM `{dashboard}`
  WHERE minute_utc >= @judged_start AND minute_utc < @judged_end AND complete
),
missing AS (
  SELECT e.domain, j.minute
  FROM expected_domains AS e CROSS JOIN judged AS j
  LEFT JOIN present AS p ON p.domain = e.domain AND p.minute = j.minute
  WHERE p.domain IS NULL
)
SELECT
  (SELECT COUNT(*) FROM expected_domains) * (SELECT COUNT(*) FROM judged) AS expected,
  (SELECT COUNT(*) FROM missing) AS missing,
  (SELECT COUNT(DISTINCT domain) FROM missing) AS missing_domains,
  (SELECT COUNT(DISTINCT minute) FROM missing) AS missing_minutes,
  ARRAY(SELECT DISTINCT domain FROM missing ORDER BY domain LIMIT 5) AS sample_domains,
  ARRAY(SELECT DISTINCT UNIX_SECONDS(minute) AS unix_minute FROM missing
        ORDER BY unix_minute LIMIT 5) AS sample_minutes
"""

# The domains a condition rule fires for in [@window_start, @window_end): those with
# @minutes bad minutes in a row ending in the window (a run may start before it, from
# @streak_start), with their worst value; worst first. {bad}: one of RULE_BAD_MINUTES,
# selecting (domain, minute, value) of the bad complete minutes.
RULE_FINDINGS = """
WITH bad AS (
{bad}
),
streaks AS (
  SELECT ending.domain, ending.minute, COUNT(*) AS bad_minutes,
         <worst>(earlier.value) AS streak_worst
  FROM bad AS ending
  JOIN bad AS earlier
    ON earlier.domain = ending.domain AND earlier.minute <= ending.minute
   AND earlier.minute > TIMESTAMP_SUB(ending.minute, INTERVAL @minutes MINUTE)
  WHERE ending.minute >= @window_start
  GROUP BY ending.domain, ending.minute
)
SELECT domain, <worst>(streak_worst) AS worst FROM streaks
WHERE bad_minutes = @minutes
GROUP BY domain
ORDER BY worst <order>, domain
"""

# Per rule kind: the bad minutes, and whether higher values are worse.
RULE_BAD_MINUTES = {
    "error_ratio_above": (
        """
  SELECT domain, minute_utc AS minute, SAFE_DIVIDE(status_5xx, requests) AS value
  FROM `{dashboard}`
  WHERE minute_utc >= @streak_start AND minute_utc < @window_end AND complete
    AND SAFE_DIVIDE(status_5xx, requests) > @threshold""",
        True,
    ),
    "hit_ratio_below": (
        """
  SELECT domain, minute_utc AS minute, hit_ratio AS value
  FROM `{dashboard}`
  WHERE minute_utc >= @streak_start AND minute_utc < @window_end AND complete
    AND requests >= @min_requests AND hit_ratio < @threshold""",
        False,
    ),
    "requests_below_day_before": (
        """
  SELECT today.domain, today.minute_utc AS minute,
         SAFE_DIVIDE(today.requests, day_before.requests) AS value
  FROM `{dashboard}` AS today
  JOIN `{dashboard}` AS day_before
    ON day_before.domain = today.domain
   AND day_before.minute_utc = TIMESTAMP_SUB(today.minute_utc, INTERVAL 1 DAY)
  WHERE today.minute_utc >= @streak_start AND today.minute_utc < @window_end
    AND day_before.minute_utc >= TIMESTAMP_SUB(@streak_start, INTERVAL 1 DAY)
    AND day_before.minute_utc < TIMESTAMP_SUB(@window_end, INTERVAL 1 DAY)
    AND today.complete AND day_before.complete AND day_before.requests > 0
    AND SAFE_DIVIDE(today.requests, day_before.requests) < @threshold""",
        False,
    ),
}


def rule_findings(kind: str) -> str:
    """RULE_FINDINGS for one rule kind; still holding the {dashboard} table placeholder."""
    bad, higher_is_worse = RULE_BAD_MINUTES[kind]
    worst, order = ("MAX", "DESC") if higher_is_worse else ("MIN", "ASC")
    return RULE_FINDINGS.replace("<worst>", worst).replace("<order>", order).replace("{bad}", bad)
