"""Named read queries of the warehouse; their SQL lives in the package's sql/ directory."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tripflow.warehouse.statements import load_sql
from tripflow.weeks import AreaQuery, Match, WeeklyAverage, query_span

# The trip ends a match mode looks at, and how their box tests combine.
_MATCH_COLUMNS: dict[Match, tuple[tuple[str, ...], str]] = {
    Match.BOTH: (("origin_coord", "destination_coord"), " AND "),
    Match.ORIGIN: (("origin_coord",), " AND "),
    Match.DESTINATION: (("destination_coord",), " AND "),
    Match.EITHER: (("origin_coord", "destination_coord"), " OR "),
}

_REGION = sql.SQL("region = %(region)s")
_DATASOURCE = sql.SQL("datasource = %(datasource)s")
_TRUE = sql.SQL("TRUE")


@cache
def _statement(name: str) -> str:
    # Whole-line comments go so that a fragment can be embedded in the middle of a query.
    text = load_sql(name)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def _filter_conditions(query: AreaQuery) -> list[sql.Composable]:
    conditions: list[sql.Composable] = []
    if query.region is not None:
        conditions.append(_REGION)
    if query.datasource is not None:
        conditions.append(_DATASOURCE)
    return conditions


def _box_condition(query: AreaQuery) -> sql.Composable | None:
    if query.bbox is None:
        return None
    columns, joiner = _MATCH_COLUMNS[query.match]
    fragment = sql.SQL(_statement("point_in_box"))
    tests = [fragment.format(column=sql.Identifier(column)) for column in columns]
    return sql.SQL("(") + sql.SQL(joiner).join(tests) + sql.SQL(")")


def _where(conditions: list[sql.Composable]) -> sql.Composable:
    return sql.SQL(" AND ").join(conditions) if conditions else _TRUE


def _parameters(query: AreaQuery) -> dict[str, Any]:
    parameters: dict[str, Any] = {"region": query.region, "datasource": query.datasource}
    if query.bbox is not None:
        parameters.update(
            min_lon=query.bbox.min_lon,
            min_lat=query.bbox.min_lat,
            max_lon=query.bbox.max_lon,
            max_lat=query.bbox.max_lat,
        )
    return parameters


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time())


def weekly_average(conn: psycopg.Connection[Any], query: AreaQuery) -> WeeklyAverage:
    """Answer the weekly average number of matching trips over the query's span of weeks."""
    parameters = _parameters(query)
    earliest: datetime | None = None
    latest: datetime | None = None
    if query.start is None or query.end is None:
        bounds = sql.SQL(_statement("trip_bounds")).format(
            conditions=_where(_filter_conditions(query))
        )
        row = conn.execute(bounds, parameters).fetchone()
        if row is not None:
            earliest, latest = row
    span = query_span(query.start, query.end, earliest, latest)
    if not span:
        return WeeklyAverage(query=query, span=span, counts={})

    # Count only inside the span, and inside the range where one was given, so the sum of
    # the series is the number of trips even if rows arrive between the two statements.
    parameters["window_start"] = query.start if query.start else _midnight(span[0])
    parameters["window_end"] = query.end if query.end else _midnight(span[-1] + timedelta(7))
    conditions = _filter_conditions(query)
    box = _box_condition(query)
    if box is not None:
        conditions.append(box)
    counts_sql = sql.SQL(_statement("weekly_counts")).format(conditions=_where(conditions))
    weeks = set(span)
    counts: dict[date, int] = {}
    for week, trips in conn.execute(counts_sql, parameters):
        if week in weeks:
            counts[week] = int(trips)
    return WeeklyAverage(query=query, span=span, counts=counts)


def _named_counts(conn: psycopg.Connection[Any], name: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql.SQL(_statement(name)))
        return [{"name": row["name"], "trips": int(row["trips"])} for row in cursor]


def list_regions(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """List every region with its number of trips, sorted by name."""
    return _named_counts(conn, "list_regions")


def list_datasources(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """List every datasource with its number of trips, sorted by name."""
    return _named_counts(conn, "list_datasources")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def list_ingestions(conn: psycopg.Connection[Any], limit: int = 50) -> list[dict[str, Any]]:
    """List the newest ingestion batches first, each with its files."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql.SQL(_statement("list_batches")), {"limit": limit})
        batches = [{key: _iso(value) for key, value in row.items()} for row in cursor]
        if not batches:
            return []
        by_id = {batch["batch_id"]: batch for batch in batches}
        for batch in batches:
            batch["files"] = []
        cursor.execute(sql.SQL(_statement("list_batch_files")), {"batch_ids": list(by_id)})
        for row in cursor:
            entry = {key: _iso(value) for key, value in row.items() if key != "batch_id"}
            by_id[row["batch_id"]]["files"].append(entry)
    return batches


def check_health(conn: psycopg.Connection[Any]) -> str:
    """Prove the database answers and return the PostGIS version, such as "3.3"."""
    row = conn.execute(sql.SQL(_statement("check_health"))).fetchone()
    if row is None or row[0] != 1:
        raise psycopg.OperationalError("the health query returned no row")
    # postgis_version() reads "3.3 USE_GEOS=1 USE_PROJ=1 USE_STATS=1".
    return str(row[1]).split()[0]
