-- Statements tests/sql_fuzz.rs once found answering XX000, dropping the connection,
-- hanging or panicking; run first by that test, one statement per line.
-- A UNION of NULL and a timestamp: rows encoded by an untyped column (XX000).
SELECT NULL FROM m UNION ALL SELECT (date_trunc('week', now()) - INTERVAL '77982 seconds') FROM m ORDER BY 1 LIMIT 20
-- time_bucket(…, NULL) and time_bucket over a microsecond column changed type under the plan (XX000).
SELECT pid AS c0, time_bucket(INTERVAL '15 minutes', NULL) AS c1, upper('2026-03-01') AS c2 FROM m ORDER BY 1 LIMIT 4
SELECT time_bucket(INTERVAL '1 minutes', NULL) AS c0, -1 AS c1 FROM m a JOIN r b ON a.pid = b.site AND (a.pid ILIKE a.msg) ORDER BY 1, 2 LIMIT 30
SELECT time_bucket(INTERVAL '15 minutes', ts) AS b, sum(CAST(CASE WHEN (CASE WHEN ok THEN msg END IS NULL) THEN extract(epoch FROM time_bucket(INTERVAL '15 minutes', ts)) ELSE n END AS BIGINT)) FROM m GROUP BY 1 ORDER BY 1 LIMIT 10
SELECT (date_trunc('month', now()) = time_bucket(INTERVAL '1 minutes', ts)) FROM m ORDER BY 1 LIMIT 20
-- Errors that have a SQLSTATE of their own (were XX000).
SELECT (msg NOT LIKE substr(NULL, CAST(1 AS BIGINT), extract(epoch FROM ts))) AS c0 FROM m WHERE NULL ORDER BY 1 LIMIT 11
SELECT pid, ts, sum(NULL) OVER (PARTITION BY pid ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND 1 FOLLOWING) FROM m ORDER BY pid, ts LIMIT 40
SELECT time_bucket(INTERVAL '0 minutes', ts) FROM m LIMIT 20
SELECT substr(pid, 1, n) FROM m WHERE n < 0 LIMIT 5
SELECT power(0.0, -1.0) FROM m LIMIT 1
SELECT sqrt(v) FROM m WHERE v < 0 LIMIT 5
SELECT extract(epoch FROM NULL) FROM m LIMIT 1
