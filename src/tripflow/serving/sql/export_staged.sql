-- The rows a publish has just inserted, read back from staging inside the publish
-- transaction (staging is a plain heap: much cheaper to read than tripdata's new rows,
-- which no index finds by batch).
SELECT region, datasource, origin_lon, origin_lat, destination_lon, destination_lat, datetime
FROM staging_tripdata
WHERE batch_id = %(batch_id)s
