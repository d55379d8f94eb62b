-- Every datasource with its number of trips; "C" collation sorts by code point everywhere.
SELECT datasource AS name, count(*) AS trips
FROM tripdata
GROUP BY datasource
ORDER BY datasource COLLATE "C"
