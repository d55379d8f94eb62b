"""Named read queries of the warehouse; their SQL lives in the package's sql/ directory."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from functools import cache
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from tripflow.warehouse.plan import Extent, Group, Plan, Summary, union_of, week_ranges
from tripflow.warehouse.statements import load_sql
from tripflow.weeks import AreaQuery, BBox, Match

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


def _fragment(name: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(_statement(name)).format(**parts)


def _filter_conditions(query: AreaQuery) -> list[sql.Composable]:
    conditions: list[sql.Composable] = []
    if query.region is not None:
        conditions.append(_REGION)
    if query.datasource is not None:
        conditions.append(_DATASOURCE)
    return conditions


def _joined(tests: Sequence[sql.Composable], joiner: str) -> sql.Composable:
    return sql.SQL("(") + sql.SQL(joiner).join(tests) + sql.SQL(")")


def _match_test(query: AreaQuery, *, use_index: bool) -> sql.Composable:
    """The box test of the query's match mode; through the GiST index, or exact only."""
    columns, joiner = _MATCH_COLUMNS[query.match]
    tests = []
    for column in columns:
        exact = _fragment("point_exactly_in_box", column=sql.Identifier(column))
        tests.append(
            _fragment("point_in_box", column=sql.Identifier(column), exact=exact)
            if use_index
            else exact
        )
    return _joined(tests, joiner)


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


def _time_condition(ranges: list[tuple[datetime, datetime]]) -> sql.Composable:
    tests = [
        sql.SQL("(datetime >= {} AND datetime < {})").format(sql.Literal(start), sql.Literal(end))
        for start, end in ranges
    ]
    return _joined(tests, " OR ")


def _outside_condition(column: str, extent: Extent, box: BBox) -> sql.Composable | None:
    """Trips whose `column` may lie in the part of the extent outside the box."""
    tests = [
        _fragment(
            "point_in_envelope",
            column=sql.Identifier(column),
            min_lon=sql.Literal(strip.min_lon),
            min_lat=sql.Literal(strip.min_lat),
            max_lon=sql.Literal(strip.max_lon),
            max_lat=sql.Literal(strip.max_lat),
        )
        for strip in extent.outside_strips(box)
    ]
    return _joined(tests, " OR ") if tests else None


# The summary as read last, per server and content; a publish changes the content key.
_summaries: dict[tuple[Any, ...], Summary] = {}
_summaries_lock = threading.Lock()
_SUMMARIES_KEPT = 8


def data_version(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """Return a key that changes whenever a publish adds trips to this database.

    Call it inside the snapshot the rest of an answer reads, so both agree."""
    version = conn.execute(sql.SQL(_statement("summary_version"))).fetchone()
    return (conn.info.host, conn.info.port, conn.info.dbname, *(version or ()))


def read_summary(conn: psycopg.Connection[Any], version: tuple[Any, ...] | None = None) -> Summary:
    """Return the weekly summary, re-read only when its content changed since last time.

    Call it inside the snapshot the rest of an answer reads, so both agree; pass the
    data_version already read in that snapshot, if any."""
    key = version if version is not None else data_version(conn)
    with _summaries_lock:
        cached = _summaries.get(key)
    if cached is not None:
        return cached
    summary = Summary(conn.execute(_fragment("week_summary", conditions=_TRUE)).fetchall())
    with _summaries_lock:
        if len(_summaries) >= _SUMMARIES_KEPT:
            _summaries.clear()
        _summaries[key] = summary
    return summary


def _count_groups(
    conn: psycopg.Connection[Any],
    narrow: list[sql.Composable],
    conditions: list[sql.Composable],
    parameters: dict[str, Any],
) -> dict[tuple[str, str, date], int]:
    statement = _fragment("group_counts", narrow=_where(narrow), conditions=_where(conditions))
    return {
        (region, datasource, week): int(trips)
        for region, datasource, week, trips in conn.execute(statement, parameters)
    }


def _scanned_counts(
    conn: psycopg.Connection[Any],
    query: AreaQuery,
    groups: list[Group],
    window: tuple[datetime, datetime],
) -> dict[tuple[str, str, date], int]:
    """Matching trips of the groups, counted in the base table."""
    parameters = _parameters(query) | {"regions": sorted({group.region for group in groups})}
    conditions = [
        _time_condition(week_ranges((group.week for group in groups), window)),
        sql.SQL("region = ANY(%(regions)s)"),
        *_filter_conditions(query),
    ]
    # A box narrows through its GiST index; without one, region and time do.
    if query.bbox is None:
        narrow, conditions = conditions, []
    else:
        narrow = [_match_test(query, use_index=True)]
    wanted = {group.key for group in groups}
    counted = _count_groups(conn, narrow, conditions, parameters)
    return {key: trips for key, trips in counted.items() if key in wanted}


def _complement_counts(
    conn: psycopg.Connection[Any],
    query: AreaQuery,
    groups: list[Group],
    window: tuple[datetime, datetime],
) -> dict[tuple[str, str, date], int]:
    """Matching trips of whole-week groups of one region: the summary's count less the
    trips that do not match, found through the index in the extents' parts outside the box.
    """
    box = query.bbox
    if box is None:
        raise ValueError("a complement needs a box")
    origin = _outside_condition("origin_coord", union_of([g.origin for g in groups]), box)
    destination = _outside_condition(
        "destination_coord", union_of([g.destination for g in groups]), box
    )
    if query.match is Match.ORIGIN:
        candidates = [origin]
    elif query.match is Match.DESTINATION:
        candidates = [destination]
    elif query.match is Match.BOTH:
        candidates = [origin, destination]
    else:
        # Neither end inside: the trips with an origin outside hold all of them.
        candidates = [origin]
    present = [candidate for candidate in candidates if candidate is not None]
    totals = {group.key: group.trips for group in groups}
    if not present:
        return totals
    parameters = _parameters(query) | {"complement_region": groups[0].region}
    narrow = [_joined(present, " OR "), sql.SQL("NOT ") + _match_test(query, use_index=False)]
    conditions = [
        _time_condition(week_ranges((group.week for group in groups), window)),
        sql.SQL("region = %(complement_region)s"),
        *_filter_conditions(query),
    ]
    missing = _count_groups(conn, narrow, conditions, parameters)
    return {key: trips - missing.get(key, 0) for key, trips in totals.items()}


@contextmanager
def snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One consistent view for every statement of an answer, even while batches publish."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # The planner guesses one row out of a box's exact test (it multiplies the
        # selectivities of && and four comparisons) and then sorts 100k+ rows to group
        # them; hashing a few hundred groups is several times faster. Local to this
        # transaction, which only counts.
        conn.execute("SET LOCAL enable_sort = off")
        yield


def count_groups(conn: psycopg.Connection[Any], plan: Plan) -> dict[tuple[str, str, date], int]:
    """Count a plan's scanned and complemented groups in tripdata, through its indexes
    (the PostGIS executor; call it inside the snapshot the plan's summary came from)."""
    counted: dict[tuple[str, str, date], int] = {}
    if plan.window is None:
        return counted
    if plan.scan:
        counted.update(_scanned_counts(conn, plan.query, plan.scan, plan.window))
    for region in sorted({group.region for group in plan.complement}):
        members = [group for group in plan.complement if group.region == region]
        counted.update(_complement_counts(conn, plan.query, members, plan.window))
    return counted


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


def latest_datasource_of_top_regions(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Answer: of the two regions with the most trips, which datasource appeared latest.

    Each datasource of those regions comes with its latest trip in them, latest first (ties:
    code-point order of the name); `latest` is the first of them, None without trips."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql.SQL(_statement("latest_datasource_of_top_regions")))
        rows = cursor.fetchall()
    regions: dict[str, int] = {row["region"]: int(row["region_trips"]) for row in rows}
    sources: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda row: row["region"].encode()):
        entry = sources.setdefault(
            row["datasource"], {"name": row["datasource"], "trips": 0, "last_trip": None}
        )
        entry["trips"] += int(row["trips"])
        if entry["last_trip"] is None or row["last_trip"] > entry["last_trip"]:
            entry["last_trip"], entry["last_region"] = row["last_trip"], row["region"]
    ordered = sorted(sources.values(), key=lambda entry: entry["name"].encode())
    ordered.sort(key=lambda entry: entry["last_trip"], reverse=True)
    datasources = [{key: _iso(value) for key, value in entry.items()} for entry in ordered]
    top = sorted(regions.items(), key=lambda item: (-item[1], item[0].encode()))
    return {
        "regions": [{"name": name, "trips": trips} for name, trips in top],
        "latest": datasources[0] if datasources else None,
        "datasources": datasources,
    }


def regions_of_datasource(conn: psycopg.Connection[Any], datasource: str) -> list[dict[str, Any]]:
    """List the regions a datasource appears in, with its trips and their time span there."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql.SQL(_statement("regions_of_datasource")), {"datasource": datasource})
        return [
            {
                "name": row["name"],
                "trips": int(row["trips"]),
                "first_trip": _iso(row["first_trip"]),
                "last_trip": _iso(row["last_trip"]),
            }
            for row in cursor
        ]


def region_extents(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """List every region with its trips, their time span and the box around their points."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql.SQL(_statement("region_extents")))
        return [
            {
                "name": row["name"],
                "trips": int(row["trips"]),
                "first_trip": _iso(row["first_trip"]),
                "last_trip": _iso(row["last_trip"]),
                "bbox": [row["min_lon"], row["min_lat"], row["max_lon"], row["max_lat"]],
            }
            for row in cursor
        ]
