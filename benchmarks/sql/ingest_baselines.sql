-- The ingest benchmark's baselines (benchmarks/ingest.py): the seed's path and the COPY floor.
-- Each `-- name:` starts one statement group that the benchmark runs (and times) on its own.

-- name: seed_tables
CREATE EXTENSION IF NOT EXISTS postgis;
-- What Spark's JDBC writer itself creates for an all-string DataFrame: a logged table of
-- text columns.
CREATE TABLE seed_staging (
    region             text,
    origin_coord       text,
    destination_coord  text,
    datetime           text,
    datasource         text
);
CREATE TABLE seed_trips (
    region             text,
    origin_coord       geometry(Point, 4326),
    destination_coord  geometry(Point, 4326),
    datetime           timestamp without time zone,
    datasource         text
);

-- name: seed_clear_staging
TRUNCATE seed_staging;

-- name: seed_insert
INSERT INTO seed_trips
SELECT
    region,
    ST_GeomFromText(origin_coord, 4326),
    ST_GeomFromText(destination_coord, 4326),
    datetime::timestamp,
    datasource
FROM seed_staging;

-- name: seed_index_origin
CREATE INDEX seed_trips_origin_coord_idx ON seed_trips USING gist (origin_coord);

-- name: seed_index_destination
CREATE INDEX seed_trips_destination_coord_idx ON seed_trips USING gist (destination_coord);

-- name: seed_index_datetime
CREATE INDEX seed_trips_datetime_idx ON seed_trips (datetime);

-- name: floor_table
-- Unlogged, unindexed, text only: nothing but COPY's own parsing and heap writes.
CREATE UNLOGGED TABLE floor_trips (
    region             text,
    origin_coord       text,
    destination_coord  text,
    datetime           text,
    datasource         text
);

-- name: floor_copy
COPY floor_trips FROM STDIN WITH (FORMAT csv, HEADER true);
