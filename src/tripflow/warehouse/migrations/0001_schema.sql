-- tripflow schema: ingestion bookkeeping, the staging table and the tripdata table.

CREATE EXTENSION IF NOT EXISTS postgis;

-- One claim of files from the landing directory. `status` is the last step that finished:
-- claimed -> processed (Spark wrote Parquet) -> staged -> published -> done (files moved).
CREATE TABLE ingestion_batch (
    batch_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status          text NOT NULL DEFAULT 'claimed'
                    CHECK (status IN ('claimed', 'processed', 'staged', 'published', 'done')),
    files           integer NOT NULL DEFAULT 0,
    rows_read       bigint,
    rows_loaded     bigint,
    rows_rejected   bigint,
    rows_duplicate  bigint,
    rows_staged     bigint,
    attempts        integer NOT NULL DEFAULT 0,
    error           text,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE TABLE ingestion_file (
    file_id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id             bigint NOT NULL REFERENCES ingestion_batch (batch_id),
    name                 text NOT NULL,
    landing_path         text NOT NULL,
    processed_path       text,
    size_bytes           bigint NOT NULL,
    checksum             text NOT NULL,
    -- the earliest loaded file with the same content, when this one repeats it
    same_as_file_id      bigint REFERENCES ingestion_file (file_id),
    status               text NOT NULL DEFAULT 'claimed'
                         CHECK (status IN ('claimed', 'loaded', 'rejected')),
    rows_read            bigint,
    rows_loaded          bigint,
    rows_rejected        bigint,
    rows_duplicate       bigint,
    error                text,
    claimed_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz
);

-- A file waiting in the landing directory belongs to at most one batch.
CREATE UNIQUE INDEX ingestion_file_waiting_uq
    ON ingestion_file (landing_path) WHERE processed_path IS NULL;
CREATE INDEX ingestion_file_batch_idx ON ingestion_file (batch_id);
CREATE INDEX ingestion_file_checksum_idx ON ingestion_file (checksum);

-- Rows of batches on their way in. Unlogged: it is rebuilt from the lake's Parquet whenever
-- it is lost (publish checks the staged row count first).
CREATE UNLOGGED TABLE staging_tripdata (
    batch_id         bigint NOT NULL,
    file_id          bigint NOT NULL,
    trip_key         uuid NOT NULL,
    region           text NOT NULL,
    origin_lon       double precision NOT NULL,
    origin_lat       double precision NOT NULL,
    destination_lon  double precision NOT NULL,
    destination_lat  double precision NOT NULL,
    datetime         timestamp NOT NULL,
    datasource       text NOT NULL
);

-- The trips. `trip_key` is the MD5 of the natural key (region, both points, datetime,
-- datasource), computed by the Spark job: a 16-byte key keeps the uniqueness index small at
-- 100M rows where a five-column key would not. The lineage columns are not foreign keys so
-- bulk inserts skip a trigger per row.
CREATE TABLE tripdata (
    trip_key           uuid PRIMARY KEY,
    region             text NOT NULL,
    origin_coord       geometry(Point, 4326) NOT NULL,
    destination_coord  geometry(Point, 4326) NOT NULL,
    datetime           timestamp without time zone NOT NULL,
    datasource         text NOT NULL,
    batch_id           bigint NOT NULL,
    file_id            bigint NOT NULL,
    loaded_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tripdata_origin_coord_idx ON tripdata USING gist (origin_coord);
CREATE INDEX tripdata_destination_coord_idx ON tripdata USING gist (destination_coord);
CREATE INDEX tripdata_region_datetime_idx ON tripdata (region, datetime);
CREATE INDEX tripdata_datetime_idx ON tripdata (datetime);
