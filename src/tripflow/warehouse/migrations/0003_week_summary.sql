-- Trips per (region, datasource, ISO week) with the extent of their points, kept by
-- publish in the same transaction as the rows. It answers every question without a box
-- (and /regions, /datasources, the span bounds) from about 1,600 rows per year instead of
-- millions, and lets a box skip the base table wherever a group's points lie wholly inside
-- it or wholly outside it. Rows of tripdata are never deleted, so counts only grow and the
-- extents only widen.
CREATE TABLE trip_week_summary (
    region               text NOT NULL,
    datasource           text NOT NULL,
    week                 date NOT NULL,  -- Monday of the ISO week
    trips                bigint NOT NULL,
    first_trip           timestamp NOT NULL,
    last_trip            timestamp NOT NULL,
    origin_min_lon       double precision NOT NULL,
    origin_min_lat       double precision NOT NULL,
    origin_max_lon       double precision NOT NULL,
    origin_max_lat       double precision NOT NULL,
    destination_min_lon  double precision NOT NULL,
    destination_min_lat  double precision NOT NULL,
    destination_max_lon  double precision NOT NULL,
    destination_max_lat  double precision NOT NULL,
    PRIMARY KEY (region, datasource, week)
);

CREATE INDEX trip_week_summary_week_idx ON trip_week_summary (week);

-- Rows published before this migration.
INSERT INTO trip_week_summary
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
FROM tripdata
GROUP BY 1, 2, 3;
