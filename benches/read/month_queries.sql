-- Issue 12's five queries over a month of 1-minute data from 1,000 meters ({t} = table).
SELECT count(*) FROM {t}
SELECT pid, avg(p) FROM {t} GROUP BY pid ORDER BY pid
SELECT ts, p FROM {t} WHERE pid = 'meter-00042' AND ts >= '2026-10-01T00:00:00Z' AND ts < '2026-10-02T00:00:00Z' ORDER BY ts
SELECT pid, ts, p FROM {t} ORDER BY ts DESC, pid LIMIT 5
SELECT date_trunc('day', ts) AS d, avg(p) FROM {t} GROUP BY d ORDER BY d
