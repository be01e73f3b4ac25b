-- UCI household power ({t} = table): the four queries of the side-by-side table.
SELECT count(*) FROM {t}
SELECT date_trunc('day', ts) AS d, avg(p) FROM {t} GROUP BY d ORDER BY d
SELECT max(v) FROM {t} WHERE ts >= '2008-03-03T00:00:00Z' AND ts < '2008-03-10T00:00:00Z'
SELECT ts, p, v FROM {t} ORDER BY ts DESC LIMIT 10
