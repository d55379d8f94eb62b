-- A batch that keeps failing is set aside as `failed` (its files moved to the lake's failed
-- area) so that it no longer blocks the batches behind it.

ALTER TABLE ingestion_batch DROP CONSTRAINT ingestion_batch_status_check;
ALTER TABLE ingestion_batch ADD CONSTRAINT ingestion_batch_status_check
    CHECK (status IN ('claimed', 'processed', 'staged', 'published', 'done', 'failed'));
