-- Rows of one batch waiting in staging, per file and trip week (the partition they go to).
SELECT file_id, date_trunc('week', datetime)::date AS week, count(*) AS staged
FROM staging_tripdata
WHERE batch_id = %(batch_id)s
GROUP BY file_id, week
