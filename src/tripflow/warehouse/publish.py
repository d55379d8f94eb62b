"""Publish a staged batch into `tripdata` in one transaction, week partition by partition."""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from tripflow.config import Settings
from tripflow.lake import trusted_dir
from tripflow.warehouse.ingestions import Status, set_status
from tripflow.warehouse.load import clear_staging
from tripflow.warehouse.statements import load_sql

log = logging.getLogger(__name__)

# A batch that is a large enough share of the rows a week's partition already holds is
# published into it with the partition's indexes dropped and rebuilt afterwards. Keeping
# the indexes up to date costs per inserted row, rebuilding them costs per stored row, and
# the first grows with the indexes: once they outgrow shared buffers each insert misses
# pages. Measured on this project's reference machine (2 cores, 6 GB shared buffers;
# docs/benchmarks.md), on the unpartitioned table of before:
#   2M stored:  keeping ~14.5 us per inserted row, rebuilding ~3.8 us per stored row
#               -> rebuilding wins from a share of about 0.26 (0.3 is used);
#   40M stored: 10M kept in 707 s (71 us per row), 10M into 30M rebuilt in 371 s
#               (9.3 us per stored row) -> rebuilding wins from about 0.13.
# Between the two sizes the share is interpolated in log(stored); it stays 0.3 below and
# falls no lower than 0.1 above. Measured again on partitions of about 1M trips (machine
# shared): a new partition filled then indexed cost 15.5 us per trip, a rebuild 18 us per
# trip it ends with, keeping 67 us per inserted trip: rebuilding wins from ~0.27. The key
# index goes too: its keys are MD5s, so inserting them touches a random page of it per row;
# without it, trips already stored are found by one hash anti-join over that partition and
# the key index is built again sorted.
_SHARE_POINTS = ((2_000_000, 0.3), (40_000_000, 0.13))
_SHARE_FLOOR = 0.1
# Disk one published trip takes, heap and four indexes (16.6 + 14.3 GB at 100M trips), and
# as much again for its WAL until the next checkpoint recycles it.
_BYTES_PER_TRIP = 2 * 310
# The advisory lock key publishes take (any constant no other code uses).
_PUBLISH_LOCK = 0x7472_6970_7075_62


class PartitionPath(StrEnum):
    """How a publish writes into one week's partition."""

    # No partition yet: created, filled, then indexed (every trip in it is new).
    NEW = "new"
    # Indexes kept up to date row by row; ON CONFLICT skips trips already stored.
    KEEP = "keep"
    # Indexes dropped, trips already stored skipped by an anti-join, indexes rebuilt.
    REBUILD = "rebuild"


@dataclass(frozen=True)
class StoredPartition:
    """A week's partition as it stands before the publish."""

    name: str
    stored: int
    index_bytes: int


@dataclass(frozen=True)
class PartitionStep:
    """What the publish does with one week (its Monday)."""

    week: date
    staged: int
    path: PartitionPath
    partition: StoredPartition | None = None


class NotEnoughDisk(RuntimeError):
    """The database's disk cannot take the batch (seen before writing, or met while writing
    and rolled back); nothing was written."""


@dataclass(frozen=True)
class DiskBudget:
    """Free space on the database's disk, above a reserve kept for everything else.

    Known only where the data directory is visible from here (the cluster tripflow manages,
    or TRIPFLOW_DATABASE_DATA_DIR); elsewhere publish cannot check and does not."""

    data_dir: Path | None
    reserve_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DiskBudget:
        """Return the budget of the database the settings name."""
        return cls(settings.database_data_path, int(settings.publish_disk_reserve))

    def available(self) -> int | None:
        """Return the bytes a publish may use, or None when the disk cannot be seen."""
        if self.data_dir is None or not self.data_dir.exists():
            return None
        return shutil.disk_usage(self.data_dir).free - self.reserve_bytes


class StagingLost(RuntimeError):
    """The batch's staged rows are not all there (the unlogged table was reset by a crash)."""


class SegmentWriter(Protocol):
    """Writes a publishing batch's rows to the serving copy (tripflow.serving)."""

    def begin(self, batch_id: int, trusted: str) -> None:
        """Start writing the batch's rows from its trusted Parquet (the lake directory
        `trusted`), before the publish statement runs."""

    def abandon(self, batch_id: int) -> None:
        """Drop what `begin` wrote (the publish did not happen)."""

    def write_batch(
        self, conn: psycopg.Connection[Any], batch_id: int, trusted: str, *, all_inserted: bool
    ) -> None:
        """Write the rows the caller's transaction just inserted for the batch."""


def publish_batch(
    conn: psycopg.Connection[Any],
    batch_id: int,
    serving: SegmentWriter | None = None,
    disk: DiskBudget | None = None,
) -> bool:
    """Move a staged batch into tripdata, skipping stored trips; return False if it was
    already published.

    Counts on the batch and its files, the status and the notification commit together
    with the rows, so a crash leaves either all of it or none. Only the partitions of the
    batch's weeks are written; with `disk`, a batch the database's disk cannot take fails
    before anything is written (NotEnoughDisk, raised too when the disk fills up while
    writing and the publish is rolled back). With `serving`, the batch's segment of the
    serving copy is written before the commit: readers take a segment only for a batch
    PostgreSQL says is published, so both stores show the batch at once."""
    try:
        try:
            return _publish(conn, batch_id, serving, disk)
        except psycopg.errors.DiskFull as error:
            # Met while writing: the free-space check sees only the data directory's disk (not
            # a tablespace elsewhere) and not other writers meanwhile. The transaction is
            # rolled back; PostgreSQL's own words name a file, not what to do.
            cause = error.diag.message_primary or error
            raise NotEnoughDisk(
                f"the database's disk filled up while publishing batch {batch_id} ({cause}). "
                "The publish was rolled back and nothing was written: free disk space, then "
                "`tripflow retry` the batch"
            ) from error
    except BaseException:
        if serving is not None:
            serving.abandon(batch_id)
        raise


def _publish(
    conn: psycopg.Connection[Any],
    batch_id: int,
    serving: SegmentWriter | None,
    disk: DiskBudget | None,
) -> bool:
    with conn.transaction():
        # One publish at a time: two would race to create the same week's partition.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PUBLISH_LOCK,))
        row = conn.execute(
            "SELECT status, rows_staged, spark_attempt FROM ingestion_batch"
            " WHERE batch_id = %s FOR UPDATE",
            (batch_id,),
        ).fetchone()
        if row is None:
            raise LookupError(f"no ingestion batch {batch_id}")
        if row[0] != Status.STAGED:
            return False
        staged: dict[int, int] = {}
        staged_weeks: dict[date, int] = {}
        for file_id, week, rows in conn.execute(load_sql("staged_counts"), {"batch_id": batch_id}):
            staged[file_id] = staged.get(file_id, 0) + rows
            staged_weeks[week] = staged_weeks.get(week, 0) + rows
        if sum(staged.values()) != (row[1] or 0):
            raise StagingLost(
                f"batch {batch_id}: {sum(staged.values())} rows in staging, {row[1]} expected"
            )
        steps = plan_partitions(
            staged_weeks,
            stored_partitions(conn, staged_weeks),
            disk.available() if disk is not None else None,
        )
        log.info("batch %s: %s", batch_id, describe_steps(steps))
        # The statement hashes the stored keys of rebuilt partitions and groups the batch
        # for the summary: bulk work, so it gets the bulk budget for this transaction only.
        # With the 64 MB default a publish of 10M into 30M ran 16+ minutes before it was
        # stopped; with this it took 371 s (the two were not split further).
        conn.execute("SELECT set_config('work_mem', current_setting('maintenance_work_mem'), true)")
        # Staged rows are read in the order they were staged (the job's place order); a
        # scan joining one already running on a large staging table would start midway.
        conn.execute("SET LOCAL synchronize_seqscans = off")
        # The recorded run's Parquet: the one staging was loaded from.
        trusted = trusted_dir(batch_id, row[2])
        if serving is not None:
            _begin_segment(serving, batch_id, trusted)
        rebuilt = _prepare_partitions(conn, steps)
        statement = sql.SQL(load_sql("publish_batch")).format(new_only=_new_only(steps))
        loaded = dict(conn.execute(statement, {"batch_id": batch_id}).fetchall())
        for name in rebuilt:
            conn.execute("SELECT tripdata_index_partition(%s::regclass)", (name,))
            # Fresh statistics for the planner of the questions PostGIS answers.
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
        files = conn.execute(
            "SELECT file_id FROM ingestion_file WHERE batch_id = %s AND status = 'claimed'",
            (batch_id,),
        ).fetchall()
        for (file_id,) in files:
            new = loaded.get(file_id, 0)
            already_stored = staged.get(file_id, 0) - new
            conn.execute(
                "UPDATE ingestion_file SET rows_loaded = %s,"
                " rows_duplicate = rows_duplicate + %s, status = 'loaded'"
                " WHERE file_id = %s",
                (new, already_stored, file_id),
            )
        conn.execute(load_sql("batch_totals"), {"batch_id": batch_id})
        if serving is not None:
            _write_segment(
                conn, serving, batch_id, trusted, sum(loaded.values()) == sum(staged.values())
            )
        clear_staging(conn, batch_id)
        set_status(conn, batch_id, Status.PUBLISHED)
    return True


def stored_partitions(
    conn: psycopg.Connection[Any], weeks: Iterable[date]
) -> dict[date, StoredPartition]:
    """Return the partitions that exist for some weeks (their Mondays), with their size."""
    rows = conn.execute(
        "SELECT week, name, stored_estimate, index_bytes FROM tripdata_partitions"
        " WHERE week = ANY(%s)",
        (list(weeks),),
    ).fetchall()
    return {
        week: StoredPartition(name, stored, index_bytes) for week, name, stored, index_bytes in rows
    }


def plan_partitions(
    staged: Mapping[date, int],
    stored: Mapping[date, StoredPartition],
    available_bytes: int | None = None,
) -> list[PartitionStep]:
    """Decide how each week of a batch is written: into a new partition, keeping an
    existing one's indexes, or rebuilding them.

    With `available_bytes` (the disk the publish may use), a rebuild that would not fit
    beside the old indexes (kept until the commit) keeps them instead, and a batch that
    does not fit at all raises NotEnoughDisk before anything is written."""
    steps = []
    for week, rows in sorted(staged.items()):
        partition = stored.get(week)
        if partition is None:
            path = PartitionPath.NEW
        elif rows >= rebuild_share(partition.stored) * partition.stored:
            path = PartitionPath.REBUILD
        else:
            path = PartitionPath.KEEP
        steps.append(PartitionStep(week, rows, path, partition))
    if available_bytes is None:
        return steps
    need = sum(staged.values()) * _BYTES_PER_TRIP
    if need > available_bytes:
        raise NotEnoughDisk(
            f"publishing {sum(staged.values()):,} trips needs about {_gigabytes(need)} on the "
            f"database's disk; {_gigabytes(max(available_bytes, 0))} are free above the reserve "
            "(TRIPFLOW_PUBLISH_DISK_RESERVE). Nothing was written: free disk space, then "
            "`tripflow retry` the batch"
        )
    # The smallest rebuilds first: they fit most often, and each one left out costs least.
    checked = []
    for step in sorted(steps, key=lambda step: step.partition.index_bytes if step.partition else 0):
        partition = step.partition
        if step.path is PartitionPath.REBUILD and partition is not None:
            if need + partition.index_bytes > available_bytes:
                log.warning(
                    "%s: not enough free disk to rebuild its indexes; keeping them",
                    partition.name,
                )
                step = PartitionStep(step.week, step.staged, PartitionPath.KEEP, partition)
            else:
                need += partition.index_bytes
        checked.append(step)
    return sorted(checked, key=lambda step: step.week)


def describe_steps(steps: Iterable[PartitionStep]) -> str:
    """Say in a few words how many partitions a publish writes, and how."""
    counts: dict[PartitionPath, int] = {}
    for step in steps:
        counts[step.path] = counts.get(step.path, 0) + 1
    parts = [f"{counts[path]} {path.value}" for path in PartitionPath if path in counts]
    return f"{sum(counts.values())} week partitions ({', '.join(parts) or 'none'})"


def _gigabytes(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB"


def _prepare_partitions(conn: psycopg.Connection[Any], steps: Iterable[PartitionStep]) -> list[str]:
    """Create the new partitions and drop the indexes of those to rebuild; return the
    names of the partitions to index after the insert."""
    to_index = []
    for step in steps:
        if step.path is PartitionPath.NEW:
            created = conn.execute(
                "SELECT tripdata_create_partition(%s)::text", (step.week,)
            ).fetchone()
            assert created is not None
            to_index.append(str(created[0]))
        elif step.path is PartitionPath.REBUILD and step.partition is not None:
            # ACCESS EXCLUSIVE on this partition only, until the commit; inside the
            # transaction, so a crash rolls the drop back with the rows.
            conn.execute(
                "SELECT tripdata_drop_partition_indexes(%s::regclass)", (step.partition.name,)
            )
            to_index.append(step.partition.name)
    return to_index


def _new_only(steps: Iterable[PartitionStep]) -> sql.Composable:
    """Return the condition that leaves out trips already stored in partitions whose key
    index is dropped (ON CONFLICT has nothing to use there); empty when there are none."""
    ranges = [
        sql.SQL("(stored.datetime >= {} AND stored.datetime < {})").format(
            sql.Literal(step.week), sql.Literal(step.week + timedelta(days=7))
        )
        for step in steps
        if step.path is PartitionPath.REBUILD
    ]
    if not ranges:
        return sql.SQL("")
    # The week bounds are constants, so only the rebuilt partitions are scanned.
    return sql.SQL(
        "AND NOT EXISTS (SELECT 1 FROM tripdata AS stored"
        " WHERE stored.trip_key = staging_tripdata.trip_key"
        " AND stored.datetime = staging_tripdata.datetime AND ({}))"
    ).format(sql.SQL(" OR ").join(ranges))


def _begin_segment(serving: SegmentWriter, batch_id: int, trusted: str) -> None:
    try:
        serving.begin(batch_id, trusted)
    except Exception as error:
        # write_batch tries again from the start; a failure there is only logged.
        log.warning("batch %s: serving copy not started (%s)", batch_id, error)


def _write_segment(
    conn: psycopg.Connection[Any],
    serving: SegmentWriter,
    batch_id: int,
    trusted: str,
    all_inserted: bool,
) -> None:
    started = time.perf_counter()
    try:
        serving.write_batch(conn, batch_id, trusted, all_inserted=all_inserted)
    except psycopg.Error:
        raise
    except Exception as error:
        # The trips still publish: readers answer from PostGIS until the copy holds the
        # batch, which the next ingest (or `tripflow serving sync`) writes from tripdata.
        log.warning("batch %s: serving copy not written (%s)", batch_id, error)
        return
    log.info("batch %s: serving copy written in %.1f s", batch_id, time.perf_counter() - started)


def rebuild_share(stored: int) -> float:
    """Return the share of `stored` from which a batch is cheaper to publish by rebuilding."""
    (small, small_share), (large, large_share) = _SHARE_POINTS
    if stored <= small:
        return small_share
    position = math.log(stored / small) / math.log(large / small)
    return max(_SHARE_FLOOR, small_share + (large_share - small_share) * position)
