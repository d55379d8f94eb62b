-- The rows of one attached segment back in the writer's incoming table, codes turned back
-- into names ({segment} is an alias copy.py made).
INSERT INTO incoming
SELECT
    regions.name,
    datasources.name,
    trips.origin_lon,
    trips.origin_lat,
    trips.destination_lon,
    trips.destination_lat,
    trips.datetime
FROM {segment}.trips AS trips
JOIN {segment}.names AS regions
    ON regions.kind = 'region' AND regions.code = trips.region
JOIN {segment}.names AS datasources
    ON datasources.kind = 'datasource' AND datasources.code = trips.datasource
