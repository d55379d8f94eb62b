-- Trips of the base table per (region, datasource, ISO week) under the given conditions:
-- the part of a weekly average that the summary cannot answer alone.
-- The conditions placeholder is filled in queries.py from fixed fragments only.
SELECT region, datasource, date_trunc('week', datetime)::date AS week, count(*) AS trips
FROM tripdata
WHERE {conditions}
GROUP BY 1, 2, 3
