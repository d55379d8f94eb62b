-- The weekly summary rows under a query's region/datasource filters.
-- The conditions placeholder is filled in queries.py from fixed fragments only.
SELECT
    region, datasource, week, trips, first_trip, last_trip,
    origin_min_lon, origin_min_lat, origin_max_lon, origin_max_lat,
    destination_min_lon, destination_min_lat, destination_max_lon, destination_max_lat
FROM trip_week_summary
WHERE {conditions}
