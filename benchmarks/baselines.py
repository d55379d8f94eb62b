"""The query benchmark's baselines: brute force in PostGIS, and DuckDB without tricks.

Both answer a weekly-average question in one straightforward SQL statement, as DESIGN.md
defines the answer: bounds under region/datasource only (skipped when the range is
complete), the span as every Monday from the week of the lower bound to the week of the
last instant, and per-week counts of the matching trips (box edges inside).

- Brute force: `tripdata` in PostGIS, the box tested with ST_X/ST_Y BETWEEN (no GiST
  operator, so no spatial index).
- Plain DuckDB: the same trips copied once into a DuckDB table of plain columns, in no
  useful order, no codes, no stored week, nothing sorted: what a developer gets by
  loading the trips into DuckDB and asking the obvious query.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import psycopg

from tripflow.serving.copy import ROW_COLUMNS
from tripflow.weeks import AreaQuery, Match, WeeklyAverage

# The plain table holds the same columns as the rows the serving copy is written from.
PLAIN_COLUMNS = ROW_COLUMNS

# Every filter is a bound value; a NULL switches it off, and a custom plan folds the
# switched-off tests away.
REFERENCE_SQL = """
WITH bounds AS (
    SELECT
        coalesce(%(start)s::timestamp, min(datetime)) AS lower,
        coalesce(%(end)s::timestamp - interval '1 microsecond', max(datetime)) AS upper
    FROM tripdata
    WHERE (%(start)s::timestamp IS NULL OR %(end)s::timestamp IS NULL)
      AND (%(region)s::text IS NULL OR region = %(region)s::text)
      AND (%(datasource)s::text IS NULL OR datasource = %(datasource)s::text)
),
span AS (
    SELECT monday::date AS week
    FROM bounds,
        generate_series(date_trunc('week', lower), date_trunc('week', upper), interval '7 days')
            AS monday
    WHERE lower <= upper
),
matching AS (
    SELECT date_trunc('week', datetime)::date AS week, count(*) AS trips
    FROM tripdata
    WHERE (%(region)s::text IS NULL OR region = %(region)s::text)
      AND (%(datasource)s::text IS NULL OR datasource = %(datasource)s::text)
      AND (%(start)s::timestamp IS NULL OR datetime >= %(start)s::timestamp)
      AND (%(end)s::timestamp IS NULL OR datetime < %(end)s::timestamp)
      AND (
          %(min_lon)s::float8 IS NULL
          OR CASE %(match)s::text
              WHEN 'both' THEN
                  ST_X(origin_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                  AND ST_Y(origin_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8
                  AND ST_X(destination_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                  AND ST_Y(destination_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8
              WHEN 'origin' THEN
                  ST_X(origin_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                  AND ST_Y(origin_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8
              WHEN 'destination' THEN
                  ST_X(destination_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                  AND ST_Y(destination_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8
              WHEN 'either' THEN
                  (ST_X(origin_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                   AND ST_Y(origin_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8)
                  OR (ST_X(destination_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                   AND ST_Y(destination_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8)
          END
      )
    GROUP BY 1
)
SELECT
    (SELECT coalesce(array_agg(week ORDER BY week), '{}') FROM span) AS weeks,
    (SELECT coalesce(array_agg(coalesce(matching.trips, 0) ORDER BY span.week), '{}')
     FROM span LEFT JOIN matching USING (week)) AS counts,
    (SELECT coalesce(sum(trips), 0) FROM matching) AS all_matching
"""

# Ordered by trip_key (a hash), i.e. in no useful order: tripdata's heap is stored by place,
# and a copy in that order would hand the baseline tripflow's own clustering.
PLAIN_EXPORT_SQL = """
COPY (
    SELECT region, datasource, ST_X(origin_coord), ST_Y(origin_coord),
        ST_X(destination_coord), ST_Y(destination_coord), datetime
    FROM tripdata
    ORDER BY trip_key
) TO STDOUT (FORMAT csv)
"""

# What the copy was made from: a new database, a batch or a trip more makes it stale.
PLAIN_SOURCE_SQL = """
SELECT concat_ws(' ', (SELECT oid FROM pg_database WHERE datname = current_database()),
    count(*), max(batch_id))
FROM tripdata
"""

# The plain statement, put together per question from fixed pieces: only the filters the
# question sets, its match mode's box test, the bounds read only for a missing range end.
PLAIN_SQL = """
WITH bounds AS (
    SELECT {lower} AS lower, {upper} AS upper {bounds_source}
),
span AS (
    SELECT CAST(monday AS DATE) AS week
    FROM (
        SELECT unnest(generate_series(
            date_trunc('week', lower), date_trunc('week', upper), INTERVAL 7 DAY
        )) AS monday
        FROM bounds
        WHERE lower <= upper
    )
),
matching AS (
    SELECT CAST(date_trunc('week', datetime) AS DATE) AS week, count(*) AS trips
    FROM trips
    WHERE {filters}
    GROUP BY 1
)
SELECT coalesce(span.week, matching.week), span.week IS NOT NULL, coalesce(matching.trips, 0)
FROM span FULL JOIN matching ON matching.week = span.week
ORDER BY 1
"""
_ORIGIN_IN = "origin_lon BETWEEN $min_lon AND $max_lon AND origin_lat BETWEEN $min_lat AND $max_lat"
_DESTINATION_IN = (
    "destination_lon BETWEEN $min_lon AND $max_lon"
    " AND destination_lat BETWEEN $min_lat AND $max_lat"
)
PLAIN_BOX_TESTS = {
    Match.BOTH: f"{_ORIGIN_IN} AND {_DESTINATION_IN}",
    Match.ORIGIN: _ORIGIN_IN,
    Match.DESTINATION: _DESTINATION_IN,
    Match.EITHER: f"(({_ORIGIN_IN}) OR ({_DESTINATION_IN}))",
}


@dataclass(frozen=True)
class BaselineAnswer:
    """A baseline's answer, with the count of matching trips wherever they fell."""

    answer: WeeklyAverage
    all_matching: int


def reference_parameters(query: AreaQuery) -> dict[str, Any]:
    """Return the bound values of REFERENCE_SQL for a question."""
    box = query.bbox
    return {
        "start": query.start,
        "end": query.end,
        "region": query.region,
        "datasource": query.datasource,
        "min_lon": box.min_lon if box else None,
        "min_lat": box.min_lat if box else None,
        "max_lon": box.max_lon if box else None,
        "max_lat": box.max_lat if box else None,
        "match": str(query.match if box else Match.BOTH),
    }


def reference_weekly_average(conn: psycopg.Connection[Any], query: AreaQuery) -> BaselineAnswer:
    """Answer a question by brute force in one plain SQL statement on tripdata."""
    # Never prepared: each run is planned with its own values, the NULL switches folded away.
    row = conn.execute(REFERENCE_SQL, reference_parameters(query), prepare=False).fetchone()
    assert row is not None
    weeks: list[date] = list(row[0])
    counts = {week: int(trips) for week, trips in zip(weeks, row[1], strict=True) if trips}
    return BaselineAnswer(WeeklyAverage(query, weeks, counts), int(row[2]))


def ready_plain_duckdb(conn: psycopg.Connection[Any], path: Path) -> Path:
    """Copy tripdata into a plain DuckDB database at `path` unless it already holds the
    same trips; return the path."""
    row = conn.execute(PLAIN_SOURCE_SQL).fetchone()
    assert row is not None
    source = str(row[0])
    if path.exists():
        with duckdb.connect(str(path), read_only=True) as duck:
            held = duck.execute("SELECT source FROM source").fetchone()
        if held is not None and held[0] == source:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    exported = path.with_name(f".{path.stem}.csv")
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with (
            conn.cursor() as cursor,
            cursor.copy(PLAIN_EXPORT_SQL) as copy,
            exported.open("wb") as output,
        ):
            for data in copy:
                output.write(data)
        with duckdb.connect(str(partial)) as duck:
            duck.execute(
                "CREATE TABLE trips AS SELECT * FROM read_csv(?, header = false, columns = ?)",
                [str(exported), PLAIN_COLUMNS],
            )
            duck.execute("CREATE TABLE source AS SELECT ? AS source", [source])
        os.replace(partial, path)
    finally:
        exported.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return path


def open_plain_duckdb(path: Path, threads: int, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """Open the plain DuckDB database read-only with the serving copy's threads and memory."""
    return duckdb.connect(
        str(path), read_only=True, config={"threads": threads, "memory_limit": memory_limit}
    )


def plain_statement(query: AreaQuery) -> tuple[str, dict[str, Any]]:
    """Return the plain DuckDB statement of a question and its bound values."""
    values: dict[str, Any] = {}
    filters: list[str] = []
    if query.region is not None:
        filters.append("region = $region")
        values["region"] = query.region
    if query.datasource is not None:
        filters.append("datasource = $datasource")
        values["datasource"] = query.datasource
    bounds_filters = list(filters)
    lower, upper = "min(datetime)", "max(datetime)"
    if query.start is not None:
        filters.append("datetime >= $start")
        lower = "CAST($start AS TIMESTAMP)"
        values["start"] = query.start
    if query.end is not None:
        filters.append("datetime < $end")
        upper = "CAST($end AS TIMESTAMP) - INTERVAL 1 MICROSECOND"
        values["end"] = query.end
    if query.bbox is not None:
        filters.append(PLAIN_BOX_TESTS[query.match])
        box = query.bbox
        values |= {
            "min_lon": box.min_lon,
            "min_lat": box.min_lat,
            "max_lon": box.max_lon,
            "max_lat": box.max_lat,
        }
    bounds_source = ""
    if query.start is None or query.end is None:
        bounds_source = "FROM trips WHERE " + (" AND ".join(bounds_filters) or "TRUE")
    statement = PLAIN_SQL.format(
        lower=lower,
        upper=upper,
        bounds_source=bounds_source,
        filters=" AND ".join(filters) or "TRUE",
    )
    return statement, values


def plain_weekly_average(duck: duckdb.DuckDBPyConnection, query: AreaQuery) -> BaselineAnswer:
    """Answer a question in the plain DuckDB database in one SQL statement."""
    statement, values = plain_statement(query)
    rows: list[tuple[date, bool, int]] = duck.execute(statement, values).fetchall()
    weeks = [week for week, in_span, _ in rows if in_span]
    counts = {week: int(trips) for week, in_span, trips in rows if in_span and trips}
    return BaselineAnswer(WeeklyAverage(query, weeks, counts), sum(int(t) for *_, t in rows))
