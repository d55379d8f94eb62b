-- The batches whose trips are in tripdata, as this snapshot sees them: the serving copy
-- must hold exactly these for an answer from it to equal one from PostGIS.
SELECT batch_id
FROM ingestion_batch
WHERE status IN ('published', 'done')
ORDER BY batch_id
