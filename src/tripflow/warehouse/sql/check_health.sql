-- One round trip that proves the server answers and PostGIS is installed.
SELECT 1 AS alive, postgis_version() AS postgis
