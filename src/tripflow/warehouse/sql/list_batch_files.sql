-- The files of the given batches, in claim order.
SELECT file_id, batch_id, name, status, checksum, size_bytes, landing_path, processed_path,
       same_as_file_id, rows_read, rows_loaded, rows_rejected, rows_duplicate, error,
       claimed_at, finished_at
FROM ingestion_file
WHERE batch_id = ANY(%(batch_ids)s)
ORDER BY batch_id, file_id
