-- Trips of the base table per (region, datasource, ISO week): the part of a weekly average
-- that the summary cannot answer alone. `narrow` picks the candidate rows (through an
-- index); OFFSET 0 keeps the planner from mixing the other conditions into that scan,
-- where an index on (region, datetime) would add millions of entries to a box's few
-- thousand. Grouping by code point ("C") sorts far faster than by the database's locale.
-- The placeholders are filled in queries.py from fixed fragments only.
SELECT
    region COLLATE "C" AS region,
    datasource COLLATE "C" AS datasource,
    date_trunc('week', datetime)::date AS week,
    count(*) AS trips
FROM (
    SELECT region, datasource, datetime
    FROM tripdata
    WHERE {narrow}
    OFFSET 0
) AS candidates
WHERE {conditions}
GROUP BY 1, 2, 3
