-- The serving-scale benchmark's DuckDB statements (benchmarks/serving_scale.py).
-- Each `-- name:` starts one statement that the benchmark runs on its own. The file's
-- statements run in the plain baseline's database while it is built: its `trips` table
-- holds every trip kept from earlier files, which a new file's trips are de-duplicated
-- against. The summary's run in an in-memory database with the segments attached.

-- name: create_trips
-- The plain baseline's table (benchmarks/baselines.py PLAIN_COLUMNS), filled file by file.
CREATE TABLE trips (
    region VARCHAR,
    datasource VARCHAR,
    origin_lon DOUBLE,
    origin_lat DOUBLE,
    destination_lon DOUBLE,
    destination_lat DOUBLE,
    datetime TIMESTAMP
);

-- name: parse_file
-- One generated CSV file as the Spark job keeps it: typed, each trip once. A point is
-- exactly `POINT (lon lat)` (how the generator writes every valid row; anything else
-- becomes NULL, which the benchmark refuses); -0.0 is 0.0, as the trip key has it.
CREATE OR REPLACE TEMP TABLE parsed AS
SELECT DISTINCT
    trim(region) AS region,
    trim(datasource) AS datasource,
    CASE WHEN origin_ok THEN TRY_CAST(origin[1] AS DOUBLE) + 0.0 END AS origin_lon,
    CASE WHEN origin_ok THEN TRY_CAST(origin[2] AS DOUBLE) + 0.0 END AS origin_lat,
    CASE WHEN destination_ok THEN TRY_CAST(destination[1] AS DOUBLE) + 0.0 END
        AS destination_lon,
    CASE WHEN destination_ok THEN TRY_CAST(destination[2] AS DOUBLE) + 0.0 END
        AS destination_lat,
    TRY_STRPTIME(trim(datetime), '%Y-%m-%d %H:%M:%S') AS datetime
FROM (
    SELECT
        region,
        datasource,
        datetime,
        string_split(origin_coord[8:-2], ' ') AS origin,
        string_split(destination_coord[8:-2], ' ') AS destination,
        origin_coord LIKE 'POINT (%)' AND len(origin) = 2 AS origin_ok,
        destination_coord LIKE 'POINT (%)' AND len(destination) = 2 AS destination_ok
    FROM read_csv(
        $path, header = true, columns = $columns, delim = ',', quote = '"', escape = '"'
    )
);

-- name: unparsed_rows
SELECT count(*)
FROM parsed
WHERE region = '' OR datasource = '' OR origin_lon IS NULL OR origin_lat IS NULL
    OR destination_lon IS NULL OR destination_lat IS NULL OR datetime IS NULL;

-- name: new_trips
-- The file's trips that no earlier file held (the hash table is built on the file's side).
CREATE OR REPLACE TEMP TABLE fresh AS
SELECT parsed.*
FROM parsed
ANTI JOIN trips
    ON parsed.region = trips.region
    AND parsed.datasource = trips.datasource
    AND parsed.origin_lon = trips.origin_lon
    AND parsed.origin_lat = trips.origin_lat
    AND parsed.destination_lon = trips.destination_lon
    AND parsed.destination_lat = trips.destination_lat
    AND parsed.datetime = trips.datetime;

-- name: keep_trips
INSERT INTO trips SELECT * FROM fresh;

-- name: create_week_parts
CREATE TEMP TABLE week_parts (
    region VARCHAR,
    datasource VARCHAR,
    week DATE,
    trips BIGINT,
    first_trip TIMESTAMP,
    last_trip TIMESTAMP,
    origin_min_lon DOUBLE,
    origin_min_lat DOUBLE,
    origin_max_lon DOUBLE,
    origin_max_lat DOUBLE,
    destination_min_lon DOUBLE,
    destination_min_lat DOUBLE,
    destination_max_lon DOUBLE,
    destination_max_lat DOUBLE
);

-- name: segment_weeks
-- One attached segment's trips per (region, datasource, week) with their times and
-- extents, counted on the codes, then named ({segment} is an alias the benchmark made).
INSERT INTO week_parts
SELECT
    regions.name,
    datasources.name,
    weeks.week,
    weeks.trips,
    weeks.first_trip,
    weeks.last_trip,
    weeks.origin_min_lon,
    weeks.origin_min_lat,
    weeks.origin_max_lon,
    weeks.origin_max_lat,
    weeks.destination_min_lon,
    weeks.destination_min_lat,
    weeks.destination_max_lon,
    weeks.destination_max_lat
FROM (
    SELECT
        region,
        datasource,
        week,
        count(*) AS trips,
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
    FROM {segment}.trips
    GROUP BY ALL
) AS weeks
JOIN {segment}.names AS regions
    ON regions.kind = 'region' AND regions.code = weeks.region
JOIN {segment}.names AS datasources
    ON datasources.kind = 'datasource' AND datasources.code = weeks.datasource;

-- name: week_summary
-- trip_week_summary's rows (src/tripflow/warehouse/sql/week_summary.sql), over every segment.
SELECT
    region,
    datasource,
    week,
    CAST(sum(trips) AS BIGINT),
    min(first_trip),
    max(last_trip),
    min(origin_min_lon),
    min(origin_min_lat),
    max(origin_max_lon),
    max(origin_max_lat),
    min(destination_min_lon),
    min(destination_min_lat),
    max(destination_max_lon),
    max(destination_max_lat)
FROM week_parts
GROUP BY region, datasource, week
ORDER BY region, datasource, week;
