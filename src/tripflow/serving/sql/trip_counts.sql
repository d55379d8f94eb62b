-- Trips per (region, datasource, ISO week) in tripdata, for `tripflow serving check`.
SELECT region, datasource, date_trunc('week', datetime)::date AS week, count(*) AS trips
FROM tripdata
GROUP BY 1, 2, 3
