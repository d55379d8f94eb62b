-- Write the incoming rows into the attached segment database: region and datasource as
-- integer codes (grouping by integers is several times faster than by text; the names
-- table maps them back), rows sorted by region, then by the Morton (Z-order) key of the
-- origin, so rows close in space share row groups and a box's filter skips every row
-- group whose origin extent misses it. The week is stored so that counts group by an
-- integer date instead of truncating every timestamp.
CREATE TABLE segment.names AS
SELECT 'region' AS kind, CAST(row_number() OVER (ORDER BY region) - 1 AS INTEGER) AS code,
    region AS name
FROM (SELECT DISTINCT region FROM incoming)
UNION ALL
SELECT 'datasource', CAST(row_number() OVER (ORDER BY datasource) - 1 AS INTEGER), datasource
FROM (SELECT DISTINCT datasource FROM incoming);

CREATE TABLE segment.trips AS
SELECT
    regions.code AS region,
    datasources.code AS datasource,
    CAST(date_trunc('week', incoming.datetime) AS DATE) AS week,
    incoming.datetime,
    incoming.origin_lon,
    incoming.origin_lat,
    incoming.destination_lon,
    incoming.destination_lat
FROM incoming
JOIN segment.names AS regions
    ON regions.kind = 'region' AND regions.name = incoming.region
JOIN segment.names AS datasources
    ON datasources.kind = 'datasource' AND datasources.name = incoming.datasource
ORDER BY regions.code, morton(incoming.origin_lon, incoming.origin_lat), incoming.datetime;

-- The same rows sorted by place of the destination: a box on destinations reads only the
-- row groups it touches there too.
CREATE TABLE segment.trips_by_destination AS
SELECT *
FROM segment.trips
ORDER BY region, morton(destination_lon, destination_lat), datetime;

-- Region, datasource and time alone, sorted by time: a question without a box whose range
-- cuts weeks reads only the row groups of the cut days.
CREATE TABLE segment.trips_by_time AS
SELECT region, datasource, week, datetime
FROM segment.trips
ORDER BY region, datetime;
