-- Every region a datasource appears in, with its trips there and their first and last
-- moments, from the weekly summary; "C" collation sorts by code point everywhere.
SELECT
    region AS name,
    sum(trips) AS trips,
    min(first_trip) AS first_trip,
    max(last_trip) AS last_trip
FROM trip_week_summary
WHERE datasource = %(datasource)s
GROUP BY region
ORDER BY region COLLATE "C"
