-- tripdata's indexes: name, whether it is the primary key, and what re-creates it (the
-- constraint's definition for the key, CREATE INDEX for the others).
SELECT
    index.relname AS name,
    info.indisprimary AS is_key,
    CASE
        WHEN info.indisprimary THEN pg_get_constraintdef(key.oid)
        ELSE pg_get_indexdef(index.oid)
    END AS definition
FROM pg_index AS info
JOIN pg_class AS index ON index.oid = info.indexrelid
LEFT JOIN pg_constraint AS key ON key.conindid = info.indexrelid AND key.contype = 'p'
WHERE info.indrelid = 'tripdata'::regclass
ORDER BY index.relname
