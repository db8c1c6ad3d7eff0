"""Every SQL statement of the pipeline, named, parameterised, each saying what it guarantees.

Values always travel as query parameters. The only text substituted into a statement is
a table id, and `bigquery.table_id` builds those from configuration and refuses anything
that is not a plain identifier. Nothing the API returns is ever part of SQL text.
"""

# Incomplete raw rows in [@since, @until): the minutes later runs fetch again.
SELECT_INCOMPLETE_RAW = """
SELECT domain, UNIX_SECONDS(minute) AS minute,
       TO_JSON_STRING(metrics) AS metrics, TO_JSON_STRING(errors) AS errors
FROM `{raw}`
WHERE NOT complete AND minute >= @since AND minute < @until
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
                       fetch_seconds, client_stats, published_at)
SELECT @run_id, @window_start, @window_end, @domains, @calls, @retries, @failures,
       @complete, @incomplete, @refetched, @filled,
       (SELECT COUNT(*) FROM `{raw}`
        WHERE NOT complete AND minute >= @lost_since AND minute < @lost_until),
       (SELECT TO_JSON(ARRAY_AGG(STRUCT(domain AS domain, UNIX_SECONDS(minute) AS minute)
                                 ORDER BY minute, domain LIMIT 20))
        FROM `{raw}`
        WHERE NOT complete AND minute >= @lost_since AND minute < @lost_until),
       @fetch_seconds, PARSE_JSON(@client_stats), CURRENT_TIMESTAMP();

COMMIT TRANSACTION;
"""

# The audit row of one run, if it was published.
SELECT_AUDIT_ROW = """
SELECT * FROM `{audit}` WHERE run_id = @run_id
"""
