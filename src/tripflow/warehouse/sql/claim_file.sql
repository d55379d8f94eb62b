-- Claim one landing file for a batch, unless another batch already holds it.
INSERT INTO ingestion_file (batch_id, name, landing_path, size_bytes, checksum, same_as_file_id)
SELECT
    %(batch_id)s, %(name)s, %(landing_path)s, %(size_bytes)s, %(checksum)s,
    (
        SELECT earlier.file_id
        FROM ingestion_file AS earlier
        WHERE earlier.checksum = %(checksum)s AND earlier.status = 'loaded'
        ORDER BY earlier.file_id
        LIMIT 1
    )
ON CONFLICT (landing_path) WHERE processed_path IS NULL DO NOTHING
RETURNING file_id
