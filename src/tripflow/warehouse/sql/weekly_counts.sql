-- Matching trips per ISO week (date_trunc('week') is Monday 00:00), inside the
-- half-open window that the span and the query's range allow.
-- The conditions placeholder is filled in queries.py from fixed fragments only.
SELECT date_trunc('week', datetime)::date AS week, count(*) AS trips
FROM tripdata
WHERE datetime >= %(window_start)s
  AND datetime < %(window_end)s
  AND {conditions}
GROUP BY 1
ORDER BY 1
