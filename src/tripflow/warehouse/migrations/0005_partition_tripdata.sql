-- tripdata becomes a table partitioned by trip week (ISO weeks, Monday to Sunday: the
-- weeks trip_week_summary counts).
--
-- A publish then touches only the partitions its trips fall in: a feed that delivers this
-- week's trips writes into this week's partition and its small indexes, whatever the size
-- of the table. Weeks rather than months: a feed delivering a month in daily or weekly
-- files would otherwise add, late in the month, to a partition of millions of trips,
-- either growing its indexes row by row (measured 3.7x the cost per row of filling a new
-- partition) or rebuilding them; with weeks most files fill a new partition. The parent has no indexes of its own; each partition carries the same four
-- (made by tripdata_index_partition below), so a publish can drop and rebuild one
-- partition's indexes without locking the others, and new partitions are filled before
-- their indexes are built.
--
-- Uniqueness stays exact: trip_key is the MD5 of the whole natural key, datetime included,
-- so a trip always falls in the same week and its key is unique within that partition.
-- (A unique index on the parent would have to include the partition key, and would stop a
-- publish from dropping one partition's key index.)

ALTER TABLE tripdata RENAME TO tripdata_unpartitioned;

-- The same columns, NOT NULLs and defaults as before.
CREATE TABLE tripdata (LIKE tripdata_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (datetime);

-- The name of the partition holding the week that starts on a Monday: tripdata_20240115.
CREATE FUNCTION tripdata_partition_name(monday date) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
RETURN 'tripdata_' || to_char(monday, 'YYYYMMDD');

-- Create the partition of the week holding a day, empty and without indexes, and attach it.
--
-- Made apart and then attached, the parent is held with SHARE UPDATE EXCLUSIVE only
-- (CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE): readers of tripdata go on.
-- The CHECK constraint equal to the bound lets ATTACH skip scanning the new table.
CREATE FUNCTION tripdata_create_partition(day date) RETURNS regclass
LANGUAGE plpgsql AS $$
DECLARE
    first_day date := date_trunc('week', day)::date;
    next_first_day date := (date_trunc('week', day) + interval '1 week')::date;
    name text := tripdata_partition_name(date_trunc('week', day)::date);
BEGIN
    EXECUTE format(
        'CREATE TABLE %I (LIKE tripdata INCLUDING DEFAULTS INCLUDING CONSTRAINTS,'
        ' CONSTRAINT %I CHECK (datetime >= %L AND datetime < %L))',
        name, name || '_week', first_day, next_first_day
    );
    EXECUTE format(
        'ALTER TABLE tripdata ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        name, first_day, next_first_day
    );
    RETURN name::regclass;
END;
$$;

-- Build a partition's indexes, those it lacks: the trip key (unique), both points (GiST)
-- and (region, datetime).
CREATE FUNCTION tripdata_index_partition(partition regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = partition);
BEGIN
    EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS %I ON %s (trip_key)',
        name || '_trip_key', partition);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gist (origin_coord)',
        name || '_origin', partition);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gist (destination_coord)',
        name || '_destination', partition);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (region, datetime)',
        name || '_region_datetime', partition);
END;
$$;

-- Drop every index of a partition (publish rebuilds them after a large insert).
CREATE FUNCTION tripdata_drop_partition_indexes(partition regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    index_name regclass;
BEGIN
    FOR index_name IN SELECT indexrelid::regclass FROM pg_index WHERE indrelid = partition
    LOOP
        EXECUTE format('DROP INDEX %s', index_name);
    END LOOP;
END;
$$;

-- The trips stored before this migration, moved week by week in place order (the order
-- publish stores them in), then indexed.
DO $$
BEGIN
    PERFORM tripdata_create_partition(week)
    FROM (SELECT DISTINCT date_trunc('week', datetime)::date AS week
          FROM tripdata_unpartitioned) AS weeks;
END;
$$;

INSERT INTO tripdata
SELECT *
FROM tripdata_unpartitioned
ORDER BY date_trunc('week', datetime), region, floor(ST_Y(origin_coord) * 200), ST_X(origin_coord);

DO $$
BEGIN
    PERFORM tripdata_index_partition(inhrelid::regclass)
    FROM pg_inherits
    WHERE inhparent = 'tripdata'::regclass;
END;
$$;

DROP TABLE tripdata_unpartitioned;

-- Publish reads these for every partition it touches: rows stored and index size.
CREATE VIEW tripdata_partitions AS
SELECT
    child.relname AS name,
    lower_bound.week,
    greatest(child.reltuples, 0)::bigint AS stored_estimate,
    pg_indexes_size(child.oid) AS index_bytes,
    pg_table_size(child.oid) AS table_bytes
FROM pg_inherits
JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid
CROSS JOIN LATERAL (
    SELECT substring(pg_get_expr(child.relpartbound, child.oid) FROM $$FROM \('([^']+)'\)$$)::date
        AS week
) AS lower_bound
WHERE pg_inherits.inhparent = 'tripdata'::regclass;
