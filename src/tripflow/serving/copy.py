"""The serving copy on disk: segments of sorted trips, each with a manifest of its batches.

A segment is `<name>.duckdb` (absent when it holds no rows), a DuckDB database file with
the rows sorted three ways (sql/write_segment.duckdb.sql) and the names behind its region
and datasource codes, and `<name>.json`, the manifest: the batches it holds and its row
count. The manifest is written last, by an atomic rename, so a segment exists for readers
only once its rows are complete. Nothing is ever changed in place: a batch written again
(a publish retried after a crash) replaces its segment whole, and a rebuild writes one new
segment for every batch, then removes the old ones.

Which segments a reader uses is decided by PostgreSQL: `cover` takes the batches a
snapshot says are published and returns segments holding exactly those, or None when the
copy does not hold them all (a batch published where this copy was not written, or a copy
deleted), in which case the caller answers from PostGIS.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import psycopg
from psycopg import sql

from tripflow.config import Settings
from tripflow.serving.groups import GroupGrid, register_cell_function, write_groups

if TYPE_CHECKING:
    # Imported for types only: it brings pandas (1.2 s) to every process importing this.
    import pyarrow.dataset as pads

log = logging.getLogger(__name__)

FORMAT = 1
# A segment's rows live in a DuckDB database file of their own, written once and then
# only attached read-only: measured at 10M trips, DuckDB's own storage answered a small box
# about five times faster than the same rows in Parquet (docs/benchmarks.md).
DATA_SUFFIX = ".duckdb"
# Bytes of exported CSV per chunk handed to DuckDB: bounds the temporary disk a rebuild of
# 100M trips needs to about this much at a time.
_CHUNK_BYTES = 512 * 1024 * 1024
_IDENTITY = re.compile(r"[0-9a-f]{32}")
# Seconds after which a writer's work directory counts as abandoned.
_ABANDONED_AFTER = 24 * 3600
# The columns of the rows a segment is written from, with their DuckDB types.
ROW_COLUMNS = {
    "region": "VARCHAR",
    "datasource": "VARCHAR",
    "origin_lon": "DOUBLE",
    "origin_lat": "DOUBLE",
    "destination_lon": "DOUBLE",
    "destination_lat": "DOUBLE",
    "datetime": "TIMESTAMP",
}
_CREATE_INCOMING = (
    "CREATE TABLE incoming (" + ", ".join(f"{c} {t}" for c, t in ROW_COLUMNS.items()) + ")"
)


@cache
def load_statement(name: str) -> str:
    """Return the text of the serving copy's `sql/<name>.sql`."""
    return (resources.files("tripflow.serving") / "sql" / f"{name}.sql").read_text()


@dataclass(frozen=True)
class Segment:
    """One immutable piece of the copy: the trips of some batches."""

    name: str
    batches: frozenset[int]
    rows: int
    path: Path | None
    # Unique per write: a segment written again under the same name is a new one.
    identity: str
    # The similar-trip groups it keeps; None for a segment written before they existed.
    groups: GroupGrid | None = None


class ServingCopy:
    """The segments under one directory (on the API host's local disk)."""

    def __init__(
        self,
        directory: Path,
        *,
        memory_limit: str = "2GB",
        threads: int = 2,
        max_segments: int = 8,
        groups: GroupGrid | None = None,
    ) -> None:
        self.directory = directory
        self.groups = groups or GroupGrid.default()
        self.memory_limit = memory_limit
        self.threads = threads
        # More segments than this in use are merged (maintenance.compact): each is one more
        # scan per count, and a feed of small batches would otherwise make thousands.
        self.max_segments = max_segments
        self._listing: tuple[int, list[Segment]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingCopy:
        """Return the copy the settings name."""
        return cls(
            settings.serving_dir_path,
            memory_limit=settings.serving_write_memory_limit,
            threads=settings.serving_threads,
            max_segments=settings.serving_max_segments,
            groups=GroupGrid(frozenset(settings.group_resolutions), settings.group_minutes),
        )

    # Reading ----------------------------------------------------------------------------

    def segments(self) -> list[Segment]:
        """Return every complete segment, re-read only when the directory changed."""
        try:
            stamp = self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        with self._lock:
            if self._listing is not None and self._listing[0] == stamp:
                return self._listing[1]
        found = []
        for manifest in sorted(self.directory.glob("*.json")):
            segment = self._read_manifest(manifest)
            if segment is not None:
                found.append(segment)
        with self._lock:
            self._listing = (stamp, found)
        return found

    def _read_manifest(self, manifest: Path) -> Segment | None:
        try:
            content = json.loads(manifest.read_text())
        except (FileNotFoundError, ValueError):
            # Removed meanwhile, or not ours: a complete segment's manifest always parses.
            return None
        # The id names the segment inside DuckDB (an attached database's alias): only the
        # hex digits this module writes are taken.
        if content.get("format") != FORMAT or not _IDENTITY.fullmatch(str(content.get("id"))):
            return None
        rows = int(content["rows"])
        path = manifest.with_suffix(DATA_SUFFIX) if rows else None
        return Segment(
            manifest.stem,
            frozenset(content["batches"]),
            rows,
            path,
            str(content["id"]),
            GroupGrid.from_dict(content.get("groups")),
        )

    def cover(self, published: Collection[int]) -> list[Segment] | None:
        """Return segments holding exactly the published batches, each once; None if the
        copy lacks any of them."""
        wanted = set(published)
        chosen: list[Segment] = []
        covered: set[int] = set()
        # Larger segments first: a rebuild's one segment beats the per-batch ones it replaced.
        for segment in sorted(self.segments(), key=lambda item: (-len(item.batches), item.name)):
            if segment.batches <= wanted and not segment.batches & covered:
                chosen.append(segment)
                covered |= segment.batches
        return chosen if covered == wanted else None

    # Writing ----------------------------------------------------------------------------

    def write_query(
        self,
        conn: psycopg.Connection[Any],
        name: str,
        batches: Collection[int],
        query: sql.Composable,
        parameters: dict[str, Any],
    ) -> Segment:
        """Write the rows a PostgreSQL query returns as segment `name` holding `batches`.

        The query's columns are those of ROW_COLUMNS, in that order. It runs on `conn`, in its
        current transaction and snapshot."""

        def fill(duck: duckdb.DuckDBPyConnection, work: Path) -> None:
            duck.execute(_CREATE_INCOMING)
            for chunk in _export_chunks(conn, query, parameters, work):
                duck.execute(
                    "INSERT INTO incoming SELECT * FROM read_csv(?, header = false,"
                    " columns = ?, quote = '\"', escape = '\"')",
                    [str(chunk), ROW_COLUMNS],
                )
                chunk.unlink()

        return self._prepare(fill).commit(name, batches)

    def prepare_parquet(
        self,
        source: pads.Dataset | list[Path],
        skipped_keys: Collection[str] = (),
        *,
        threads: int | None = None,
    ) -> Prepared:
        """Write the rows of Parquet files (a batch's trusted Parquet: local paths, or an
        Arrow dataset on any filesystem) as a segment not yet visible to readers, leaving
        out the trips whose trip_key (32 lowercase hex digits) is in `skipped_keys`."""

        def fill(duck: duckdb.DuckDBPyConnection, work: Path) -> None:
            if isinstance(source, list):
                # DuckDB reads local Parquet itself, in parallel.
                files = ", ".join(duck_literal(str(path)) for path in source)
                duck.execute(f"CREATE VIEW source AS SELECT * FROM read_parquet([{files}])")
            else:
                duck.register("source", source)
            columns = ", ".join(ROW_COLUMNS)
            if skipped_keys:
                duck.execute("CREATE TEMP TABLE skipped (trip_key VARCHAR)")
                duck.executemany("INSERT INTO skipped VALUES (?)", [[key] for key in skipped_keys])
                duck.execute(
                    f"CREATE TABLE incoming AS SELECT {columns} FROM source"
                    " ANTI JOIN skipped"
                    " ON lower(replace(source.trip_key, '-', '')) = skipped.trip_key"
                )
            else:
                duck.execute(f"CREATE TABLE incoming AS SELECT {columns} FROM source")

        return self._prepare(fill, threads)

    def merge(self, segments: Collection[Segment], name: str) -> Segment:
        """Write the rows of some segments as one segment `name` holding all their batches
        (the old ones stay until the caller removes them)."""

        def fill(duck: duckdb.DuckDBPyConnection, work: Path) -> None:
            duck.execute(_CREATE_INCOMING)
            for number, segment in enumerate(item for item in segments if item.path):
                alias = f"merged_{number}"
                duck.execute(f"ATTACH {duck_literal(str(segment.path))} AS {alias} (READ_ONLY)")
                duck.execute(load_statement("merge_segment.duckdb").format(segment=alias))
                duck.execute(f"DETACH {alias}")

        batches = set().union(*(segment.batches for segment in segments))
        return self._prepare(fill).commit(name, batches)

    def _prepare(
        self,
        fill: Callable[[duckdb.DuckDBPyConnection, Path], None],
        threads: int | None = None,
    ) -> Prepared:
        self.directory.mkdir(parents=True, exist_ok=True)
        work = self.directory / f".work-{uuid.uuid4().hex}"
        work.mkdir()
        try:
            with self._writer(work, threads or self.threads) as duck:
                fill(duck, work)
                row = duck.execute("SELECT count(*) FROM incoming").fetchone()
                rows = int(row[0]) if row else 0
                if rows:
                    target = duck_literal(str(work / "segment.duckdb"))
                    duck.execute(f"ATTACH {target} AS segment")
                    duck.execute(load_statement("write_segment.duckdb"))
                    write_groups(duck, self.groups, load_statement("write_groups.duckdb"))
                    duck.execute("DETACH segment")
            (work / "incoming.duckdb").unlink(missing_ok=True)
            return Prepared(self, work, rows)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise

    @contextmanager
    def _writer(self, work: Path, threads: int) -> Iterator[duckdb.DuckDBPyConnection]:
        # A database file of its own, so a batch larger than memory spills to disk.
        duck = duckdb.connect(str(work / "incoming.duckdb"))
        with closing(duck):
            duck.execute(f"SET threads = {int(threads)}")
            duck.execute("SET memory_limit = ?", [self.memory_limit])
            duck.execute("SET temp_directory = ?", [str(work / "spill")])
            duck.execute(load_statement("morton.duckdb"))
            register_cell_function(duck)
            yield duck

    def publish_manifest(self, name: str, batches: Collection[int], rows: int) -> Segment:
        """Make a segment whose data file is in place visible to readers."""
        manifest = self.directory / f"{name}.json"
        identity = uuid.uuid4().hex
        content = {
            "format": FORMAT,
            "id": identity,
            "batches": sorted(batches),
            "rows": rows,
            "groups": self.groups.to_dict(),
            "written_at": datetime.now(UTC).isoformat(),
        }
        partial = self.directory / f".{name}.json.{uuid.uuid4().hex[:8]}"
        partial.write_text(json.dumps(content))
        _sync_file(partial)
        os.replace(partial, manifest)
        if not rows:
            (self.directory / f"{name}{DATA_SUFFIX}").unlink(missing_ok=True)
        _sync_directory(self.directory)
        path = manifest.with_suffix(DATA_SUFFIX) if rows else None
        return Segment(name, frozenset(batches), rows, path, identity, self.groups)

    def remove(self, segments: Collection[Segment]) -> None:
        """Remove segments: the manifest first, so no reader picks one up half gone.

        A reader that chose the segment a moment earlier still holds its file open, or
        retries with a fresh listing when the file is gone."""
        for segment in segments:
            (self.directory / f"{segment.name}.json").unlink(missing_ok=True)
            if segment.path is not None:
                segment.path.unlink(missing_ok=True)
        if segments:
            _sync_directory(self.directory)

    def clear_work(self) -> None:
        """Remove what interrupted writers left behind (a day old: a writer still at work
        in another process keeps its files)."""
        if not self.directory.exists():
            return
        limit = time.time() - _ABANDONED_AFTER
        for leftover in [*self.directory.glob(".work-*"), *self.directory.glob(".*.json.*")]:
            try:
                if leftover.stat().st_mtime > limit:
                    continue
            except FileNotFoundError:
                continue
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


@dataclass
class Prepared:
    """A segment's rows written in a work directory, not yet visible to readers."""

    copy: ServingCopy
    work: Path
    rows: int

    def commit(self, name: str, batches: Collection[int]) -> Segment:
        """Move the rows into place as segment `name` holding `batches`, then publish it."""
        try:
            if self.rows:
                data = self.work / "segment.duckdb"
                _sync_file(data)
                os.replace(data, self.copy.directory / f"{name}{DATA_SUFFIX}")
            return self.copy.publish_manifest(name, batches, self.rows)
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the work directory and what is left in it."""
        shutil.rmtree(self.work, ignore_errors=True)


def batch_segment_name(batch_id: int) -> str:
    """Return the name of the segment a publish writes for one batch."""
    return f"batch-{batch_id:012d}"


def duck_literal(text: str) -> str:
    """Return text as a DuckDB string literal (for paths, which DuckDB cannot bind)."""
    return "'" + text.replace("'", "''") + "'"


def _export_chunks(
    conn: psycopg.Connection[Any],
    query: sql.Composable,
    parameters: dict[str, Any],
    work: Path,
) -> Iterator[Path]:
    """COPY a query's rows out as CSV files of about _CHUNK_BYTES each.

    PostgreSQL sends one COPY data message per row, so a file cut between messages is cut
    between rows, whatever the text holds."""
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)
    number = 0
    handle = None
    written = 0
    try:
        with conn.cursor() as cursor, cursor.copy(statement, parameters) as copy:
            for data in copy:
                if handle is None:
                    path = work / f"chunk-{number:06d}.csv"
                    handle = path.open("wb")
                    written = 0
                written += handle.write(data)
                if written >= _CHUNK_BYTES:
                    handle.close()
                    handle = None
                    number += 1
                    yield path
        if handle is not None:
            handle.close()
            handle = None
            yield path
    finally:
        if handle is not None:
            handle.close()


def _sync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
