-- Every region with its number of trips, their first and last moments and the box around
-- all their points (origins and destinations), from the weekly summary; "C" collation sorts
-- by code point everywhere.
SELECT
    region AS name,
    sum(trips) AS trips,
    min(first_trip) AS first_trip,
    max(last_trip) AS last_trip,
    least(min(origin_min_lon), min(destination_min_lon)) AS min_lon,
    least(min(origin_min_lat), min(destination_min_lat)) AS min_lat,
    greatest(max(origin_max_lon), max(destination_max_lon)) AS max_lon,
    greatest(max(origin_max_lat), max(destination_max_lat)) AS max_lat
FROM trip_week_summary
GROUP BY region
ORDER BY region COLLATE "C"
