-- The newest ingestion batches first (identity ids grow with every claim).
SELECT batch_id, status, files AS file_count, rows_read, rows_loaded, rows_rejected,
       rows_duplicate, rows_staged, attempts, error, claimed_at, updated_at, finished_at
FROM ingestion_batch
ORDER BY batch_id DESC
LIMIT %(limit)s
