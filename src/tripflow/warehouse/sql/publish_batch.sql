-- Move one staged batch into tripdata; trips already stored are skipped.
-- Returns, per file, how many of its staged rows were new.
WITH inserted AS (
    INSERT INTO tripdata (
        trip_key, region, origin_coord, destination_coord, datetime, datasource,
        batch_id, file_id
    )
    SELECT
        trip_key,
        region,
        ST_SetSRID(ST_MakePoint(origin_lon, origin_lat), 4326),
        ST_SetSRID(ST_MakePoint(destination_lon, destination_lat), 4326),
        datetime,
        datasource,
        batch_id,
        file_id
    FROM staging_tripdata
    WHERE batch_id = %(batch_id)s
    ON CONFLICT (trip_key) DO NOTHING
    RETURNING file_id
)
SELECT file_id, count(*) AS loaded
FROM inserted
GROUP BY file_id
