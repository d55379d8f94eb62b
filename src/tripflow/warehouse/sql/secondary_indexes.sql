-- tripdata's indexes other than its primary key, with the statements that re-create them.
SELECT index.relname AS name, pg_get_indexdef(index.oid) AS definition
FROM pg_index AS info
JOIN pg_class AS index ON index.oid = info.indexrelid
WHERE info.indrelid = 'tripdata'::regclass
  AND NOT info.indisprimary
ORDER BY index.relname
