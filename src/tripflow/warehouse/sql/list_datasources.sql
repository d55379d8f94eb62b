-- Every datasource with its number of trips, from the weekly summary; "C" collation sorts
-- by code point everywhere.
SELECT datasource AS name, sum(trips) AS trips
FROM trip_week_summary
GROUP BY datasource
ORDER BY datasource COLLATE "C"
