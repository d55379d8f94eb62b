-- Rows of one batch waiting in staging, per file and trip month (the partition they go to).
SELECT file_id, date_trunc('month', datetime)::date AS month, count(*) AS staged
FROM staging_tripdata
WHERE batch_id = %(batch_id)s
GROUP BY file_id, month
