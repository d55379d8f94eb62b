-- The segment's similar-trip groups at one H3 resolution: its trips counted per region,
-- datasource, origin cell, destination cell and time-of-day bucket (the bucket's first
-- minute; a bucket is $minutes wide). Counted from segment.trips, so region and datasource
-- are the segment's codes; sorted by them, so a filter on either skips row groups.
-- h3_cell is the Python function groups.register_cell_function gives the writer.
INSERT INTO segment.trip_groups
SELECT
    CAST($resolution AS TINYINT),
    region,
    datasource,
    h3_cell(origin_lat, origin_lon, $resolution),
    h3_cell(destination_lat, destination_lon, $resolution),
    CAST((hour(datetime) * 60 + minute(datetime)) // $minutes * $minutes AS SMALLINT),
    count(*)
FROM segment.trips
GROUP BY ALL
ORDER BY 2, 3, 7 DESC
