-- Every status change of every batch, numbered in commit order (ingestions.notify writes
-- one row per change, under a lock held to the commit): what the API's event stream sends,
-- kept so that a client that reconnects, or an API that restarts, misses nothing.
CREATE TABLE ingestion_event (
    event_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id  bigint NOT NULL REFERENCES ingestion_batch (batch_id),
    at        timestamptz NOT NULL DEFAULT now(),
    payload   jsonb NOT NULL
);

CREATE INDEX ingestion_event_batch_idx ON ingestion_event (batch_id);

-- Batches from before: their present state, one event each.
INSERT INTO ingestion_event (batch_id, at, payload)
SELECT
    batch_id,
    updated_at,
    jsonb_build_object(
        'batch_id', batch_id, 'status', status, 'files', files, 'rows_read', rows_read,
        'rows_loaded', rows_loaded, 'rows_rejected', rows_rejected,
        'rows_duplicate', rows_duplicate, 'error', error
    )
FROM ingestion_batch
ORDER BY batch_id;
