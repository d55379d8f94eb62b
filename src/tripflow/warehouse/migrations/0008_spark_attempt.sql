-- Which run of the Spark job a batch's recorded counts, and so its trusted Parquet, come
-- from: each run writes under trusted/.../batch=<id>/attempt=<attempt>/ of its own, so a run
-- that outlives its task (killed, then retried while its job still runs on the Connect
-- server or as an orphaned spark-submit) never mixes its files into the run that counted.
-- NULL for batches processed before: their Parquet is directly under batch=<id>/.
ALTER TABLE ingestion_batch ADD COLUMN spark_attempt text
    CHECK (spark_attempt ~ '^[0-9a-f]{12}$');
