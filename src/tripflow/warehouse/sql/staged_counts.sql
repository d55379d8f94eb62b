-- Rows of one batch waiting in staging, per file.
SELECT file_id, count(*) AS staged
FROM staging_tripdata
WHERE batch_id = %(batch_id)s
GROUP BY file_id
