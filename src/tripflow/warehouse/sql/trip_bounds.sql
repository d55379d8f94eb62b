-- Earliest and latest trip under a query's region/datasource filters (never its box): the
-- span of a weekly average without a date range runs between these two.
-- The conditions placeholder is filled in queries.py from fixed fragments only.
SELECT min(datetime) AS earliest, max(datetime) AS latest
FROM tripdata
WHERE {conditions}
