"""Keeping the serving copy equal to tripdata: per publish, after a crash, on demand.

- A publish writes its batch's segment inside its own transaction, before the commit
  (`BatchWriter`): once PostgreSQL says the batch is published, its segment is on disk. A
  crash before the commit leaves a segment of an unpublished batch, which no reader takes
  and the batch's next publish replaces.
- `sync` writes one segment for every published batch the copy lacks (a copy deleted, a
  publish that could not write it, batches published before the copy existed) and drops
  the segments of batches set aside as failed.
- `rebuild` writes the whole copy again from tripdata as one segment.
- `check` compares trips per (region, datasource, week) between the copy and tripdata.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from tripflow.lake import Lake
from tripflow.serving.copy import (
    Prepared,
    Segment,
    ServingCopy,
    batch_segment_name,
    load_statement,
)
from tripflow.serving.engine import Engine

if TYPE_CHECKING:
    import pyarrow.dataset as pads

log = logging.getLogger(__name__)


def published_batches(conn: psycopg.Connection[Any]) -> list[int]:
    """Return the batches whose trips are in tripdata, in the caller's snapshot."""
    return [int(row[0]) for row in conn.execute(load_statement("published_batches"))]


@contextmanager
def snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One repeatable-read snapshot for every statement in the block (the caller's own
    transaction when it already holds one)."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


class BatchWriter:
    """Writes a publishing batch's segment from the batch's trusted Parquet in the lake.

    `begin` starts writing while PostgreSQL runs the publish statement (a single core
    busy there; DuckDB's sorts use the other), `write_batch` waits for it and makes the
    segment visible before the publish commits."""

    def __init__(self, copy: ServingCopy, lake: Lake) -> None:
        self.copy = copy
        self.lake = lake
        self._pending: dict[int, Future[Prepared]] = {}
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serving-copy")

    def _source(self, trusted: str) -> pads.Dataset | list[Path]:
        directory = self.lake.full_path(trusted)
        if urlsplit(self.lake.url).scheme in ("", "file"):
            return sorted(Path(directory).rglob("*.parquet"))
        # Imported here: pyarrow.dataset brings pandas (1.2 s), needed only off local disk.
        import pyarrow.dataset as pads

        return pads.dataset(directory, filesystem=self.lake.fs, format="parquet")

    def begin(self, batch_id: int, trusted: str) -> None:
        """Start writing the batch's rows (its trusted Parquet in the lake directory
        `trusted`), all of them, in the background."""
        self.abandon(batch_id)
        # One thread: the publish statement keeps one core busy, and its sorts and index
        # builds want the other too; two DuckDB threads made the publish of 10M trips 28 s
        # slower where the segment alone takes 15 s (benchmarks/publish_overhead.py).
        self._pending[batch_id] = self._workers.submit(
            self.copy.prepare_parquet, self._source(trusted), threads=1
        )

    def abandon(self, batch_id: int) -> None:
        """Drop what `begin` wrote for the batch (its publish did not happen)."""
        pending = self._pending.pop(batch_id, None)
        if pending is not None:
            pending.add_done_callback(_discard)

    def write_batch(
        self, conn: psycopg.Connection[Any], batch_id: int, trusted: str, *, all_inserted: bool
    ) -> None:
        """Make visible the segment of a batch whose rows the caller's transaction just
        inserted.

        Staging holds exactly the trusted Parquet's rows (publish checked the count); when
        some trips were already stored they were not inserted, and the segment is written
        again without them."""
        pending = self._pending.pop(batch_id, None)
        prepared = pending.result() if pending is not None else None
        if prepared is None or not all_inserted:
            if prepared is not None:
                prepared.discard()
            prepared = self.copy.prepare_parquet(
                self._source(trusted), [] if all_inserted else _skipped_keys(conn, batch_id)
            )
        prepared.commit(batch_segment_name(batch_id), [batch_id])


def _discard(pending: Future[Prepared]) -> None:
    if pending.exception() is None:
        pending.result().discard()


def _skipped_keys(conn: psycopg.Connection[Any], batch_id: int) -> list[str]:
    """Keys of the batch's staged trips that an earlier batch had stored, as 32 lowercase
    hex digits (the Spark job's form)."""
    return [
        uuid.UUID(str(row[0])).hex
        for row in conn.execute(
            "SELECT s.trip_key FROM staging_tripdata AS s"
            " WHERE s.batch_id = %(batch_id)s AND NOT EXISTS ("
            "SELECT 1 FROM tripdata AS t"
            " WHERE t.trip_key = s.trip_key AND t.batch_id = s.batch_id)",
            {"batch_id": batch_id},
        )
    ]


def sync(conn: psycopg.Connection[Any], copy: ServingCopy) -> list[int]:
    """Write the published batches the copy lacks as one segment, from tripdata; drop the
    segments of failed batches. Return the batches written."""
    copy.clear_work()
    with snapshot(conn):
        failed = {
            int(row[0])
            for row in conn.execute("SELECT batch_id FROM ingestion_batch WHERE status = 'failed'")
        }
        copy.remove([segment for segment in copy.segments() if segment.batches & failed])
        published = set(published_batches(conn))
        held: set[int] = set()
        for segment in copy.segments():
            if segment.batches <= published:
                held |= segment.batches
        missing = sorted(published - held)
        if missing:
            log.info("serving copy: writing %d published batches it lacks", len(missing))
            copy.write_query(
                conn,
                f"repair-{uuid.uuid4().hex[:12]}",
                missing,
                sql.SQL(load_statement("export_trips")),
                {"batch_ids": missing},
            )
    _drop_superseded(copy, published)
    return missing


def rebuild(conn: psycopg.Connection[Any], copy: ServingCopy) -> int:
    """Write the whole copy again from tripdata as one segment, then drop the old ones;
    return the rows written. Readers keep answering from the old segments meanwhile."""
    copy.clear_work()
    with snapshot(conn):
        published = published_batches(conn)
        segment = copy.write_query(
            conn,
            f"rebuild-{uuid.uuid4().hex[:12]}",
            published,
            sql.SQL(load_statement("export_trips")),
            {"batch_ids": published},
        )
    copy.remove(
        [
            old
            for old in copy.segments()
            if old.name != segment.name and old.batches <= segment.batches
        ]
    )
    return segment.rows


def compact(conn: psycopg.Connection[Any], copy: ServingCopy) -> Segment | None:
    """Merge the smaller half of the segments in use into one when there are more than
    copy.max_segments; return the merged segment, if any.

    Merging the smaller half keeps the number of times a trip is rewritten to about the
    logarithm of the number of batches, where merging everything would rewrite the whole
    copy every few batches."""
    with snapshot(conn):
        chosen = copy.cover(published_batches(conn))
    if chosen is None:
        return None
    holding = sorted((segment for segment in chosen if segment.rows), key=lambda s: s.rows)
    if len(holding) <= copy.max_segments:
        return None
    merged = holding[: max(2, len(holding) // 2)] + [s for s in chosen if not s.rows]
    segment = copy.merge(merged, f"merge-{uuid.uuid4().hex[:12]}")
    copy.remove(merged)
    log.info("serving copy: merged %d segments into %s", len(merged), segment.name)
    return segment


def _drop_superseded(copy: ServingCopy, published: set[int]) -> None:
    """Drop the segments a reader never chooses any more: those whose batches a chosen,
    larger segment also holds."""
    chosen = copy.cover(published)
    if chosen is None:
        return
    names = {segment.name for segment in chosen}
    held = set().union(*(segment.batches for segment in chosen)) if chosen else set()
    copy.remove(
        [
            segment
            for segment in copy.segments()
            if segment.name not in names and segment.batches and segment.batches <= held
        ]
    )


@dataclass(frozen=True)
class CheckResult:
    """What `check` found: batches the copy lacks, and groups whose counts differ."""

    published: int
    missing_batches: list[int]
    differences: list[tuple[str, str, date, int, int]]

    @property
    def ok(self) -> bool:
        """Tell whether the copy equals tripdata."""
        return not self.missing_batches and not self.differences


def check(conn: psycopg.Connection[Any], copy: ServingCopy, engine: Engine) -> CheckResult:
    """Compare the copy with tripdata: the batches it holds, and the trips per (region,
    datasource, week), read in one snapshot of tripdata."""
    with snapshot(conn):
        published = published_batches(conn)
        chosen = copy.cover(published)
        if chosen is None:
            held = set().union(*(s.batches for s in copy.segments() if s.batches <= set(published)))
            return CheckResult(len(published), sorted(set(published) - held), [])
        expected = {
            (str(region), str(datasource), week): int(trips)
            for region, datasource, week, trips in conn.execute(load_statement("trip_counts"))
        }
    got = engine.group_counts(chosen)
    differences = [
        (region, datasource, week, got.get(key, 0), expected.get(key, 0))
        for key in sorted(set(got) | set(expected))
        for region, datasource, week in [key]
        if got.get(key, 0) != expected.get(key, 0)
    ]
    return CheckResult(len(published), [], differences)
