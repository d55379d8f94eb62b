-- The step a batch had finished when it was set aside as failed, so `tripflow retry`
-- resumes it from there (a batch that failed at publish does not run Spark again). Batches
-- set aside before this column existed resume from the start.
ALTER TABLE ingestion_batch ADD COLUMN stopped_at text
    CHECK (stopped_at IN ('claimed', 'processed', 'staged', 'published'));
