-- Sum the per-file counts onto the batch.
UPDATE ingestion_batch AS batch
SET rows_read = totals.rows_read,
    rows_loaded = totals.rows_loaded,
    rows_rejected = totals.rows_rejected,
    rows_duplicate = totals.rows_duplicate
FROM (
    SELECT
        coalesce(sum(rows_read), 0) AS rows_read,
        coalesce(sum(rows_loaded), 0) AS rows_loaded,
        coalesce(sum(rows_rejected), 0) AS rows_rejected,
        coalesce(sum(rows_duplicate), 0) AS rows_duplicate
    FROM ingestion_file
    WHERE batch_id = %(batch_id)s
) AS totals
WHERE batch.batch_id = %(batch_id)s
