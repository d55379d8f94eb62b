-- Every region with its number of trips, from the weekly summary; "C" collation sorts by
-- code point everywhere.
SELECT region AS name, sum(trips) AS trips
FROM trip_week_summary
GROUP BY region
ORDER BY region COLLATE "C"
