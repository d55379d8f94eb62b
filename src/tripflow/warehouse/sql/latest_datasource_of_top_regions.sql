-- The two regions with the most trips (ties: the first name in code-point order), and for
-- each datasource that appears in them its latest trip there, from the weekly summary:
-- about 1,600 rows per year whatever the number of trips.
WITH top_regions AS (
    SELECT region, sum(trips) AS trips
    FROM trip_week_summary
    GROUP BY region
    ORDER BY sum(trips) DESC, region COLLATE "C"
    LIMIT 2
)
SELECT
    top_regions.region,
    top_regions.trips AS region_trips,
    summary.datasource,
    sum(summary.trips) AS trips,
    max(summary.last_trip) AS last_trip
FROM top_regions
JOIN trip_week_summary AS summary USING (region)
GROUP BY top_regions.region, top_regions.trips, summary.datasource
