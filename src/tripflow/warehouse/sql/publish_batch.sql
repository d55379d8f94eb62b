-- Move one staged batch into tripdata; trips already stored are skipped. The trips really
-- inserted are counted into trip_week_summary in this same statement and transaction.
-- Returns, per file, how many of its staged rows were new. Trips already stored are skipped
-- by ON CONFLICT on each partition's key index; publish.py fills in an anti-join for the
-- partitions whose key index it dropped to rebuild (ON CONFLICT has nothing to use there).
--
-- Only the counts need the inserted rows. Extents and first/last times come from all the
-- batch's staged rows: a staged trip that was already stored lies in the same group and
-- inside that group's stored extent and times, so including it changes nothing. Reading
-- doubles from staging is much cheaper than carrying geometries out of RETURNING.
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
    {new_only}
    -- No ORDER BY: the rows are taken in the order they were staged, which is the Spark
    -- job's place order (preprocess.place_order: week by week, so one partition's indexes
    -- are written at a time, then by place). Sorting them again here cost 6 s per 2M
    -- trips. The order only decides which pages a box reads, never an answer.
    ON CONFLICT DO NOTHING
    RETURNING file_id, region, datasource, datetime
),
counted AS (
    SELECT region, datasource, date_trunc('week', datetime)::date AS week, count(*) AS trips
    FROM inserted
    GROUP BY 1, 2, 3
),
staged AS (
    SELECT
        region,
        datasource,
        date_trunc('week', datetime)::date AS week,
        min(datetime) AS first_trip,
        max(datetime) AS last_trip,
        min(origin_lon) AS origin_min_lon,
        min(origin_lat) AS origin_min_lat,
        max(origin_lon) AS origin_max_lon,
        max(origin_lat) AS origin_max_lat,
        min(destination_lon) AS destination_min_lon,
        min(destination_lat) AS destination_min_lat,
        max(destination_lon) AS destination_max_lon,
        max(destination_lat) AS destination_max_lat
    FROM staging_tripdata
    WHERE batch_id = %(batch_id)s
    GROUP BY 1, 2, 3
),
summarised AS (
    INSERT INTO trip_week_summary AS summary
    SELECT
        counted.region,
        counted.datasource,
        counted.week,
        counted.trips,
        staged.first_trip,
        staged.last_trip,
        staged.origin_min_lon,
        staged.origin_min_lat,
        staged.origin_max_lon,
        staged.origin_max_lat,
        staged.destination_min_lon,
        staged.destination_min_lat,
        staged.destination_max_lon,
        staged.destination_max_lat
    FROM counted
    JOIN staged USING (region, datasource, week)
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
