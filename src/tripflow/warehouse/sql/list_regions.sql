-- Every region with its number of trips; "C" collation sorts by code point everywhere.
SELECT region AS name, count(*) AS trips
FROM tripdata
GROUP BY region
ORDER BY region COLLATE "C"
