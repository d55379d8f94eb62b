"""The weekly average, top to bottom: plan once from the summary, then count what the plan
leaves in the serving copy (DuckDB) or, when the copy does not hold the state this
snapshot sees, in PostGIS.

Every read of one answer shares one PostgreSQL snapshot: the summary, the data version and
the list of published batches that decides which segments of the copy are read. A batch
publishing meanwhile is in none of them or in all of them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import psycopg

from tripflow.config import Settings
from tripflow.serving.copy import ServingCopy
from tripflow.serving.engine import Engine
from tripflow.serving.groups import GroupQuery, group_json
from tripflow.serving.maintenance import published_batches
from tripflow.warehouse import queries
from tripflow.warehouse.plan import Plan, plan_question
from tripflow.weeks import AreaQuery, WeeklyAverage

log = logging.getLogger(__name__)

# Tests set this to force every partly covered group to be scanned (False) or counted by
# its complement (True); None lets the planner choose.
FORCED_COMPLEMENT: bool | None = None
# Seconds between two warnings that the copy is behind (one per question would flood).
_WARN_EVERY = 60.0


@dataclass
class Serving:
    """The serving copy and the engine that reads it."""

    copy: ServingCopy
    engine: Engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Serving:
        """Return the serving copy the settings name."""
        return cls(
            ServingCopy.from_settings(settings),
            Engine(memory_limit=settings.serving_memory_limit, threads=settings.serving_threads),
        )


_published: dict[tuple[Any, ...], list[int]] = {}
_published_lock = threading.Lock()
_last_warning = 0.0


def weekly_average(
    conn: psycopg.Connection[Any],
    query: AreaQuery,
    *,
    serving: Serving | None = None,
    version: tuple[Any, ...] | None = None,
) -> WeeklyAverage:
    """Answer the weekly average number of matching trips over the query's span of weeks.

    A caller that already read queries.data_version in the snapshot it holds passes it."""
    with queries.snapshot(conn):
        version = version if version is not None else queries.data_version(conn)
        plan = plan_question(queries.read_summary(conn, version), query, FORCED_COMPLEMENT)
        if not plan.needs_trips:
            return plan.answer({})
        if serving is not None:
            counted = _count_in_copy(conn, serving, plan, version)
            if counted is not None:
                return plan.answer(counted)
        return plan.answer(queries.count_groups(conn, plan))


def warm_up(conn: psycopg.Connection[Any], serving: Serving) -> None:
    """Do once what a process's first question would: read the summary and the published
    batches, open DuckDB and attach the segments in use (an API worker, before it serves)."""
    with queries.snapshot(conn):
        version = queries.data_version(conn)
        queries.read_summary(conn, version)
        segments = serving.copy.cover(_published_batches(conn, version))
    if segments is not None:
        cursor, _ = serving.engine.attach(segments)
        cursor.close()


def _count_in_copy(
    conn: psycopg.Connection[Any], serving: Serving, plan: Plan, version: tuple[Any, ...]
) -> dict[tuple[str, str, date], int] | None:
    """Count in the copy; None when it does not hold this snapshot's batches."""
    published = _published_batches(conn, version)
    for attempt in range(2):
        segments = serving.copy.cover(published)
        if segments is None:
            _warn_behind(serving.copy, published)
            return None
        try:
            return serving.engine.count_groups(segments, plan)
        except duckdb.Error as error:
            # A rebuild removed a segment between the listing and the read: list again,
            # then give the question to PostGIS rather than fail it.
            if attempt:
                log.warning("serving copy unreadable (%s): answering from PostGIS", error)
    return None


def _published_batches(conn: psycopg.Connection[Any], version: tuple[Any, ...]) -> list[int]:
    # Every publish that adds trips changes the data version, and a batch that added none
    # has an empty segment, so the list read once per version serves every later question.
    with _published_lock:
        known = _published.get(version)
    if known is not None:
        return known
    found = published_batches(conn)
    with _published_lock:
        if len(_published) > 8:
            _published.clear()
        _published[version] = found
    return found


def _warn_behind(copy: ServingCopy, published: list[int]) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning < _WARN_EVERY:
        return
    _last_warning = now
    held: set[int] = set()
    for segment in copy.segments():
        held |= segment.batches
    missing = sorted(set(published) - held)
    log.warning(
        "serving copy at %s lacks %d published batches (first %s): answering from PostGIS "
        "until `tripflow serving sync` (or the next ingest) writes them",
        copy.directory,
        len(missing),
        missing[:5],
    )


class GroupsUnavailable(RuntimeError):
    """The serving copy cannot answer similar-trip groups now; says what would fix it."""


def trip_groups(
    conn: psycopg.Connection[Any],
    query: GroupQuery,
    *,
    serving: Serving,
    version: tuple[Any, ...] | None = None,
) -> dict[str, Any]:
    """List one page of the largest similar-trip groups, each with its weekly average over
    the span of weeks of the trips its region and datasource filters select."""
    with queries.snapshot(conn):
        version = version if version is not None else queries.data_version(conn)
        published = _published_batches(conn, version)
        span = weekly_average(
            conn, AreaQuery(region=query.region, datasource=query.datasource), version=version
        )
        for attempt in range(2):
            segments = serving.copy.cover(published)
            if segments is None:
                raise GroupsUnavailable(
                    "The serving copy does not hold every published batch yet; the next ingest "
                    "or `tripflow serving sync` writes them."
                )
            stale = [
                segment.name
                for segment in segments
                if segment.path is not None
                and (
                    segment.groups is None
                    or not segment.groups.serves(query.resolution, query.bucket_minutes)
                )
            ]
            if stale:
                raise GroupsUnavailable(
                    f"{len(stale)} segments of the serving copy were written without groups at "
                    f"resolution {query.resolution} in buckets of {query.bucket_minutes} minutes "
                    f"(first: {stale[0]}); `tripflow serving rebuild` writes them again."
                )
            try:
                rows, total = serving.engine.trip_groups(segments, query)
                break
            except duckdb.Error:
                # A rebuild removed a segment between the listing and the read: list again.
                if attempt:
                    raise
    weeks = span.weeks
    return {
        "region": query.region,
        "datasource": query.datasource,
        "resolution": query.resolution,
        "bucket_minutes": query.bucket_minutes,
        "min_trips": query.min_trips,
        "limit": query.limit,
        "offset": query.offset,
        "trips": span.trips,
        "weeks": weeks,
        "first_week": span.span[0].isoformat() if span.span else None,
        "last_week": span.span[-1].isoformat() if span.span else None,
        "total_groups": total,
        "groups": [group_json(row, query.bucket_minutes, weeks) for row in rows],
    }


__all__ = [
    "FORCED_COMPLEMENT",
    "GroupsUnavailable",
    "Serving",
    "trip_groups",
    "warm_up",
    "weekly_average",
]
