-- Stored trips of some batches (all of them on a rebuild), in the serving copy's columns.
SELECT region, datasource, ST_X(origin_coord), ST_Y(origin_coord),
    ST_X(destination_coord), ST_Y(destination_coord), datetime
FROM tripdata
WHERE batch_id = ANY(%(batch_ids)s)
