-- The same, when some staged trips were already stored by an earlier batch and so were not
-- inserted: only the staged trips that tripdata now holds under this batch.
SELECT s.region, s.datasource, s.origin_lon, s.origin_lat, s.destination_lon,
    s.destination_lat, s.datetime
FROM staging_tripdata AS s
JOIN tripdata AS t ON t.trip_key = s.trip_key AND t.batch_id = s.batch_id
WHERE s.batch_id = %(batch_id)s
