"""Every SQL statement of the pipeline, named, parameterised, each saying what it guarantees.

Values always travel as query parameters. The only text substituted into a statement is
a table id, and `bigquery.table_id` builds those from configuration and refuses anything
that is not a plain identifier. Nothing the API returns is ever part of SQL text.
"""

from dag_utils.tables import DASHBOARD_METRICS

_TYPED = ",\n       ".join(
    f"SAFE_CAST(JSON_VALUE(metrics, '$.{endpoint}.{metric}') AS {kind}) AS {column}"
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

# One staging table from the shards' staging tables ({shards}: SELECTs joined by UNION ALL,
# built by raw_ingest from this run's own table ids).
COMBINE_STAGING = """
CREATE OR REPLACE TABLE `{staging}` AS
{shards}
"""

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

DELETE FROM `{audit}` WHERE run_id = @run_id;

INSERT INTO `{audit}` (run_id, window_start, window_end, domains, calls, retries, failures,
                       complete, incomplete, refetched, filled, lost, lost_sample,
                       fetch_seconds, client_stats, published_at, refetch_start)
SELECT @run_id, @window_start, @window_end, @domains, @calls, @retries, @failures,
       @complete, @incomplete, @refetched, @filled,
       (SELECT COUNT(*) FROM `{raw}`
        WHERE NOT complete AND minute >= @lost_since AND minute < @lost_until),
       (SELECT TO_JSON(ARRAY_AGG(STRUCT(domain AS domain, UNIX_SECONDS(minute) AS minute)
                                 ORDER BY minute, domain LIMIT 20))
        FROM `{raw}`
        WHERE NOT complete AND minute >= @lost_since AND minute < @lost_until),
       @fetch_seconds, PARSE_JSON(@client_stats), CURRENT_TIMESTAMP(), @since;

COMMIT TRANSACTION;
"""

# The audit row of one run, if it was published.
SELECT_AUDIT_ROW = """
SELECT * FROM `{audit}` WHERE run_id = @run_id
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
SELECT COUNT(*) AS rows, COUNTIF(complete) AS complete FROM `{dashboard}`
WHERE minute_utc >= @window_start AND minute_utc < @window_end
"""

# What is missing from the window: each domain the ingest saw in the window or the day
# before it, times each minute, without a complete dashboard row. Counts and samples.
CHECK_WINDOW = """
WITH expected_domains AS (
  SELECT DISTINCT domain FROM `{raw}`
  WHERE minute >= @lookback_start AND minute < @window_end
),
minutes AS (
  SELECT minute FROM UNNEST(GENERATE_TIMESTAMP_ARRAY(
    @window_start, TIMESTAMP_SUB(@window_end, INTERVAL 1 MINUTE), INTERVAL 1 MINUTE)) AS minute
),
present AS (
  SELECT domain, minute_utc AS minute FROM `{dashboard}`
  WHERE minute_utc >= @window_start AND minute_utc < @window_end AND complete
),
missing AS (
  SELECT e.domain, m.minute
  FROM expected_domains AS e CROSS JOIN minutes AS m
  LEFT JOIN present AS p ON p.domain = e.domain AND p.minute = m.minute
  WHERE p.domain IS NULL
)
SELECT
  (SELECT COUNT(*) FROM expected_domains) * (SELECT COUNT(*) FROM minutes) AS expected,
  (SELECT COUNT(*) FROM missing) AS missing,
  (SELECT COUNT(DISTINCT domain) FROM missing) AS missing_domains,
  (SELECT COUNT(DISTINCT minute) FROM missing) AS missing_minutes,
  ARRAY(SELECT DISTINCT domain FROM missing ORDER BY domain LIMIT 5) AS sample_domains,
  ARRAY(SELECT DISTINCT UNIX_SECONDS(minute) AS m FROM missing ORDER BY m LIMIT 5)
    AS sample_minutes
"""
