-- Move one staged batch into tripdata; trips already stored are skipped. The rows really
-- inserted also go into trip_week_summary, in this same statement and transaction.
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
    RETURNING file_id, region, datasource, datetime, origin_coord, destination_coord
),
summarised AS (
    INSERT INTO trip_week_summary AS summary
    SELECT
        region,
        datasource,
        date_trunc('week', datetime)::date,
        count(*),
        min(datetime),
        max(datetime),
        min(ST_X(origin_coord)),
        min(ST_Y(origin_coord)),
        max(ST_X(origin_coord)),
        max(ST_Y(origin_coord)),
        min(ST_X(destination_coord)),
        min(ST_Y(destination_coord)),
        max(ST_X(destination_coord)),
        max(ST_Y(destination_coord))
    FROM inserted
    GROUP BY 1, 2, 3
    ON CONFLICT (region, datasource, week) DO UPDATE SET
        trips = summary.trips + excluded.trips,
        first_trip = least(summary.first_trip, excluded.first_trip),
        last_trip = greatest(summary.last_trip, excluded.last_trip),
        origin_min_lon = least(summary.origin_min_lon, excluded.origin_min_lon),
        origin_min_lat = least(summary.origin_min_lat, excluded.origin_min_lat),
        origin_max_lon = greatest(summary.origin_max_lon, excluded.origin_max_lon),
        origin_max_lat = greatest(summary.origin_max_lat, excluded.origin_max_lat),
        destination_min_lon = least(summary.destination_min_lon, excluded.destination_min_lon),
        destination_min_lat = least(summary.destination_min_lat, excluded.destination_min_lat),
        destination_max_lon = greatest(summary.destination_max_lon, excluded.destination_max_lon),
        destination_max_lat = greatest(summary.destination_max_lat, excluded.destination_max_lat)
)
SELECT file_id, count(*) AS loaded
FROM inserted
GROUP BY file_id
