"""The OpenAPI 3.1 description of the API, and the endpoint list of its index page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tripflow.api.errors import MAX_TARGET_BYTES
from tripflow.api.events import LAST_EVENT_ID, LAST_EVENT_PARAMETER
from tripflow.api.params import (
    DEFAULT_GROUP_LIMIT,
    DEFAULT_INGESTION_LIMIT,
    MAX_GROUP_LIMIT,
    MAX_GROUP_OFFSET,
    MAX_INGESTION_LIMIT,
    MOMENT_PATTERN,
    NAME_PATTERN,
    default_bucket,
)
from tripflow.records import MAX_LAT, MAX_LON, MIN_LAT, MIN_LON
from tripflow.serving.groups import GroupGrid, valid_bucket_widths
from tripflow.warehouse.ingestions import Status
from tripflow.weeks import MAX_SPAN_WEEKS, Match


@dataclass(frozen=True)
class Endpoint:
    """One public route: its path, what it answers, and an example request."""

    path: str
    summary: str
    example: str


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/", "List the endpoints with examples (a browser gets the web page).", "/"),
    Endpoint(
        "/weekly-average",
        "Weekly average number of trips in a bounding box and/or region, over ISO weeks.",
        "/weekly-average?bbox=14.3,49.9,14.6,50.2&from=2018-05-01&to=2018-06-01&match=both",
    ),
    Endpoint("/regions", "Regions with their number of trips.", "/regions"),
    Endpoint(
        "/regions/extents",
        "Regions with their trips, time span and the box around their points (for a map).",
        "/regions/extents",
    ),
    Endpoint("/datasources", "Datasources with their number of trips.", "/datasources"),
    Endpoint(
        "/ingestions",
        "Newest ingestion batches first, each with its files and row counts.",
        "/ingestions?limit=10",
    ),
    Endpoint(
        "/ingestions/events",
        "Every status change of every batch as it happens (Server-Sent Events), resumable.",
        "/ingestions/events?last_event_id=0",
    ),
    Endpoint(
        "/insights/latest-datasource-of-top-regions",
        "Of the two regions with the most trips, the datasource that appeared latest.",
        "/insights/latest-datasource-of-top-regions",
    ),
    Endpoint(
        "/insights/regions-of-datasource",
        "The regions a datasource appeared in, with its trips there.",
        "/insights/regions-of-datasource?datasource=cheap_mobile",
    ),
    Endpoint(
        "/trip-groups",
        "The largest groups of similar trips: same region, H3 cell of each end, time of day.",
        "/trip-groups?region=Prague&resolution=8&bucket=60&min_trips=2&limit=10",
    ),
    Endpoint("/health", "Database and PostGIS reachability.", "/health"),
    Endpoint("/openapi.json", "This API described as OpenAPI 3.1.", "/openapi.json"),
)

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INTEGER = {"type": ["integer", "null"]}
_NULLABLE_COUNT = {"type": ["integer", "null"], "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


def _closed(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object with exactly these properties, every one always present."""
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        "example": example,
    }


_AREA_PARAMETERS = [
    {
        **_query(
            "bbox",
            "Bounding box `min_lon,min_lat,max_lon,max_lat` in EPSG:4326, decimal numbers "
            "(spaces around them are ignored); edges are inside; min may equal max (a line or "
            "a point) but not exceed it.",
            {
                "type": "array",
                "prefixItems": [
                    {"type": "number", "minimum": MIN_LON, "maximum": MAX_LON},
                    {"type": "number", "minimum": MIN_LAT, "maximum": MAX_LAT},
                    {"type": "number", "minimum": MIN_LON, "maximum": MAX_LON},
                    {"type": "number", "minimum": MIN_LAT, "maximum": MAX_LAT},
                ],
                "items": False,
                "minItems": 4,
            },
            [14.3, 49.9, 14.6, 50.2],
        ),
        # One comma-separated value, as `bbox=14.3,49.9,14.6,50.2`.
        "style": "form",
        "explode": False,
    },
    _query(
        "region",
        "Only trips of this region (exact name; spaces at either end are ignored; no control "
        "characters).",
        {"type": "string", "pattern": NAME_PATTERN},
        "Prague",
    ),
    _query(
        "datasource",
        "Only trips of this datasource (exact name; spaces at either end are ignored; no "
        "control characters).",
        {"type": "string", "pattern": NAME_PATTERN},
        "funny_car",
    ),
    _query(
        "from",
        "Inclusive start, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS` (wall-clock time; a space may "
        "replace the T). Without it the span starts at the week of the earliest trip of the "
        "region/datasource.",
        {"type": "string", "pattern": MOMENT_PATTERN},
        "2018-05-01",
    ),
    _query(
        "to",
        "Exclusive end, same formats; must be later than `from`. Without it the span ends at "
        "the week of the latest trip of the region/datasource. An end at Monday 00:00 does not "
        f"add that week. A span may hold at most {MAX_SPAN_WEEKS} weeks.",
        {"type": "string", "pattern": MOMENT_PATTERN},
        "2018-06-01",
    ),
    _query(
        "match",
        "Which end of a trip must be inside the box.",
        {"type": "string", "enum": [str(mode) for mode in Match], "default": str(Match.BOTH)},
        str(Match.BOTH),
    ),
]

_NAMED_COUNT = _closed({"name": {"type": "string"}, "trips": _COUNT})
_DATE = {"type": "string", "format": "date"}
_NULLABLE_DATE = {"type": ["string", "null"], "format": "date"}

# Trip times are wall-clock, without an offset (the CSV's own).
_TRIP_TIME = {"type": "string", "description": "Wall-clock time of a trip, YYYY-MM-DDTHH:MM:SS."}
# A region with its trips and their first and last moments (more fields may follow).
_REGION_SPAN = {
    "name": {"type": "string"},
    "trips": _COUNT,
    "first_trip": _TRIP_TIME,
    "last_trip": _TRIP_TIME,
}
_LATEST_SOURCE = _closed(
    {
        "name": {"type": "string"},
        "trips": _COUNT,
        "last_trip": _TRIP_TIME,
        "last_region": {"type": "string", "description": "Where its latest trip was."},
    }
)
# One range for all four numbers: schemathesis (4.x) turns a response's prefixItems into the
# array form of items, which its own 2020-12 validator then refuses as an invalid schema.
_EXTENT = {
    "type": "array",
    "description": "min_lon, min_lat, max_lon, max_lat of every origin and destination.",
    "items": {"type": "number", "minimum": MIN_LON, "maximum": MAX_LON},
    "minItems": 4,
    "maxItems": 4,
}
_EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,18}$"}

_CELL = _closed(
    {
        "cell": {"type": "string", "pattern": "^[0-9a-f]{15}$", "description": "H3 cell id."},
        "lon": {"type": "number", "minimum": MIN_LON, "maximum": MAX_LON},
        "lat": {"type": "number", "minimum": MIN_LAT, "maximum": MAX_LAT},
    },
    description="An H3 cell and its centre.",
)
_CLOCK = {"type": "string", "pattern": "^(?:[01][0-9]|2[0-4]):[0-5][0-9]$"}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "invalid_params": {
                "type": "array",
                "description": "Present on 400 answers: one entry per rejected parameter.",
                "items": _closed({"name": {"type": "string"}, "reason": {"type": "string"}}),
            },
        },
        "additionalProperties": False,
    },
    "WeeklyAverage": _closed(
        {
            "trips": {**_COUNT, "description": "Matching trips in the span."},
            "weeks": {**_COUNT, "description": "ISO weeks in the span, empty ones too."},
            "weekly_average": {
                "type": "number",
                "minimum": 0,
                "description": "trips / weeks (0 if no week).",
            },
            "first_week": _NULLABLE_DATE,
            "last_week": _NULLABLE_DATE,
            "series": {
                "type": "array",
                "items": _closed(
                    {
                        "week": {
                            "type": "string",
                            "pattern": "^[0-9]{4}-W[0-9]{2}$",
                            "example": "2018-W21",
                        },
                        "week_start": _DATE,
                        "trips": _COUNT,
                    }
                ),
            },
            "query": _closed(
                {
                    "bbox": {
                        "type": ["array", "null"],
                        "items": {"type": "number"},
                        "minItems": 4,
                        "maxItems": 4,
                    },
                    "region": _NULLABLE_STRING,
                    "datasource": _NULLABLE_STRING,
                    "from": _NULLABLE_STRING,
                    "to": _NULLABLE_STRING,
                    "match": {"type": "string", "enum": [str(mode) for mode in Match]},
                },
                description="The question as understood.",
            ),
        }
    ),
    "TripGroups": _closed(
        {
            "region": _NULLABLE_STRING,
            "datasource": _NULLABLE_STRING,
            "resolution": {"type": "integer", "minimum": 0, "maximum": 15},
            "bucket_minutes": {"type": "integer", "minimum": 1, "maximum": 1440},
            "min_trips": {"type": "integer", "minimum": 1},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_GROUP_LIMIT},
            "offset": {"type": "integer", "minimum": 0},
            "trips": {**_COUNT, "description": "Trips of the region and datasource."},
            "weeks": {
                **_COUNT,
                "description": "ISO weeks from their first trip's to their last trip's: "
                "every group's weekly average divides by it.",
            },
            "first_week": _NULLABLE_DATE,
            "last_week": _NULLABLE_DATE,
            "total_groups": {**_COUNT, "description": "Groups with at least min_trips trips."},
            "groups": {
                "type": "array",
                "description": "Largest first; ties by region, origin cell, destination cell "
                "and time of day.",
                "items": _closed(
                    {
                        "region": {"type": "string"},
                        "origin": _CELL,
                        "destination": _CELL,
                        "time_of_day": _closed(
                            {"from": _CLOCK, "to": _CLOCK},
                            description="Wall-clock start (inclusive) and end (exclusive).",
                        ),
                        "trips": {"type": "integer", "minimum": 1},
                        "weekly_average": {"type": "number", "minimum": 0},
                    }
                ),
            },
        }
    ),
    "IngestionFile": _closed(
        {
            "file_id": {"type": "integer"},
            "name": {"type": "string"},
            "status": {"type": "string", "enum": ["claimed", "loaded", "rejected"]},
            "checksum": {"type": "string"},
            "size_bytes": _COUNT,
            "landing_path": {"type": "string"},
            "processed_path": _NULLABLE_STRING,
            "same_as_file_id": _NULLABLE_INTEGER,
            "rows_read": _NULLABLE_COUNT,
            "rows_loaded": _NULLABLE_COUNT,
            "rows_rejected": _NULLABLE_COUNT,
            "rows_duplicate": _NULLABLE_COUNT,
            "error": _NULLABLE_STRING,
            "claimed_at": _TIME,
            "finished_at": _NULLABLE_TIME,
        }
    ),
    "IngestionBatch": _closed(
        {
            "batch_id": {"type": "integer"},
            # Every status a batch can have, `failed` (set aside) included.
            "status": {"type": "string", "enum": [str(status) for status in Status]},
            "file_count": _COUNT,
            "rows_read": _NULLABLE_COUNT,
            "rows_loaded": _NULLABLE_COUNT,
            "rows_rejected": _NULLABLE_COUNT,
            "rows_duplicate": _NULLABLE_COUNT,
            "rows_staged": _NULLABLE_COUNT,
            "attempts": _COUNT,
            "error": _NULLABLE_STRING,
            "claimed_at": _TIME,
            "updated_at": _TIME,
            "finished_at": _NULLABLE_TIME,
            "files": {"type": "array", "items": {"$ref": "#/components/schemas/IngestionFile"}},
        }
    ),
}

_BAD_REQUEST = _problem(
    "Invalid query parameters (unknown, repeated or malformed, or a range the rules refuse): "
    "`invalid_params` names each."
)
_TOO_LONG = _problem(f"The request target (path and query) is over {MAX_TARGET_BYTES} bytes.")
_INTERNAL_ERROR = _problem("The server failed to answer; the error has been logged.")
_UNAVAILABLE = _problem(
    "The database cannot be reached, or (type trips-being-published) a large publish holds "
    "the trips this question needs; retry after Retry-After seconds.",
    headers={
        "Retry-After": {
            "description": "Seconds to wait before asking again.",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
)


def _get(
    summary: str,
    ok: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    database: bool = True,
    unavailable: str | None = None,
) -> dict[str, Any]:
    # Every status the API answers a GET with; a method other than GET (or HEAD) gets 405.
    responses: dict[str, Any] = {
        "200": ok,
        "400": _BAD_REQUEST,
        "414": _TOO_LONG,
        "500": _INTERNAL_ERROR,
    }
    if database:
        responses["503"] = (
            _UNAVAILABLE if unavailable is None else {**_UNAVAILABLE, "description": unavailable}
        )
    return {"get": {"summary": summary, "parameters": parameters or [], "responses": responses}}


def _group_parameters(grid: GroupGrid, default_resolution: int) -> list[dict[str, Any]]:
    name = {"type": "string", "pattern": NAME_PATTERN}
    return [
        _query("region", "Only groups of this region (exact name).", name, "Prague"),
        _query(
            "datasource",
            "Count only trips of this datasource (exact name).",
            name,
            "funny_car",
        ),
        _query(
            "resolution",
            "H3 resolution of both cells (the ones the server keeps; 8 is about 1 km across).",
            {
                "type": "integer",
                "enum": sorted(grid.resolutions),
                "default": default_resolution,
            },
            default_resolution,
        ),
        _query(
            "bucket",
            "Width of the time-of-day buckets in minutes; buckets start at midnight.",
            {
                "type": "integer",
                "enum": valid_bucket_widths(grid.minutes),
                "default": default_bucket(grid),
            },
            default_bucket(grid),
        ),
        _query(
            "min_trips",
            "Only groups with at least this many trips.",
            {"type": "integer", "minimum": 1, "maximum": 999_999_999, "default": 1},
            2,
        ),
        _query(
            "limit",
            "Groups per page.",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_GROUP_LIMIT,
                "default": DEFAULT_GROUP_LIMIT,
            },
            10,
        ),
        _query(
            "offset",
            "Groups to skip (the page's start).",
            {"type": "integer", "minimum": 0, "maximum": MAX_GROUP_OFFSET, "default": 0},
            0,
        ),
    ]


def build_openapi(
    server_url: str = "/", grid: GroupGrid | None = None, default_resolution: int | None = None
) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the API (the group grid is the server's)."""
    grid = grid or GroupGrid.default()
    if default_resolution is None:
        default_resolution = max(grid.resolutions)
    summaries = {endpoint.path: endpoint.summary for endpoint in ENDPOINTS}
    index_schema = _closed(
        {
            "name": {"type": "string"},
            "openapi": {"type": "string", "description": "The URL of this document."},
            "endpoints": {
                "type": "array",
                "items": _closed(
                    {
                        "path": {"type": "string"},
                        "description": {"type": "string"},
                        "example": {"type": "string", "description": "An example URL."},
                    }
                ),
            },
        }
    )
    health_schema = _closed(
        {
            "status": {"const": "ok"},
            "database": {"const": "ok"},
            "postgis": {"type": "string", "example": "3.3"},
        }
    )
    limit = _query(
        "limit",
        "How many batches to list, newest first.",
        {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_INGESTION_LIMIT,
            "default": DEFAULT_INGESTION_LIMIT,
        },
        10,
    )
    paths = {
        "/": _get(
            summaries["/"],
            {
                "description": "The endpoints as JSON; the web page (map, chart, live "
                "ingestions) to a client that prefers text/html, as browsers do.",
                "content": {
                    "application/json": {"schema": index_schema},
                    "text/html": {"schema": {"type": "string"}},
                },
            },
            database=False,
        ),
        "/weekly-average": _get(
            summaries["/weekly-average"],
            _json(
                "The average, its denominator and the per-week counts.",
                {"$ref": "#/components/schemas/WeeklyAverage"},
            ),
            parameters=_AREA_PARAMETERS,
        ),
        "/regions": _get(
            summaries["/regions"],
            _json(
                "Regions sorted by name.",
                _closed({"regions": {"type": "array", "items": _NAMED_COUNT}}),
            ),
        ),
        "/regions/extents": _get(
            summaries["/regions/extents"],
            _json(
                "Regions sorted by name, read from the weekly summary.",
                _closed(
                    {
                        "regions": {
                            "type": "array",
                            "items": _closed({**_REGION_SPAN, "bbox": _EXTENT}),
                        }
                    }
                ),
            ),
        ),
        "/datasources": _get(
            summaries["/datasources"],
            _json(
                "Datasources sorted by name.",
                _closed({"datasources": {"type": "array", "items": _NAMED_COUNT}}),
            ),
        ),
        "/ingestions": _get(
            summaries["/ingestions"],
            _json(
                "Batches, newest first.",
                _closed(
                    {
                        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_INGESTION_LIMIT},
                        "ingestions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/IngestionBatch"},
                        },
                    }
                ),
            ),
            parameters=[limit],
        ),
        "/ingestions/events": _get(
            summaries["/ingestions/events"],
            {
                "description": "A stream that stays open: a `retry:` line, then per status "
                "change an event `batch` whose `id` is its event id and whose `data` is the "
                "batch's state as JSON (event_id, at, batch_id, status, files, rows_read, "
                "rows_loaded, rows_rejected, rows_duplicate, error); a `: heartbeat` comment "
                "line when idle. Without an event id, only changes from now on.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            parameters=[
                _query(
                    LAST_EVENT_PARAMETER,
                    "Send the events after this one first (0: the whole history).",
                    _EVENT_ID,
                    "0",
                ),
                {
                    "name": LAST_EVENT_ID,
                    "in": "header",
                    "required": False,
                    "description": "What a reconnecting EventSource sends: the last event "
                    "id it received (wins over the query parameter).",
                    "schema": _EVENT_ID,
                },
            ],
            unavailable="The database cannot be reached, or this API process serves as many "
            "event streams as it may; retry after Retry-After seconds.",
        ),
        "/insights/latest-datasource-of-top-regions": _get(
            summaries["/insights/latest-datasource-of-top-regions"],
            _json(
                "The two regions with the most trips (ties: code-point order), each datasource "
                "of theirs latest first, and the latest one (null without trips).",
                _closed(
                    {
                        "regions": {"type": "array", "items": _NAMED_COUNT, "maxItems": 2},
                        "latest": {"oneOf": [{"type": "null"}, _LATEST_SOURCE]},
                        "datasources": {"type": "array", "items": _LATEST_SOURCE},
                    }
                ),
            ),
        ),
        "/insights/regions-of-datasource": _get(
            summaries["/insights/regions-of-datasource"],
            _json(
                "The regions sorted by name (none for a datasource never seen).",
                _closed(
                    {
                        "datasource": {"type": "string"},
                        "regions": {
                            "type": "array",
                            "items": _closed(_REGION_SPAN),
                        },
                    }
                ),
            ),
            parameters=[
                {
                    **_query(
                        "datasource",
                        "The datasource (exact name; spaces at either end are ignored; no "
                        "control characters).",
                        {"type": "string", "pattern": NAME_PATTERN},
                        "cheap_mobile",
                    ),
                    "required": True,
                }
            ],
        ),
        "/trip-groups": _get(
            summaries["/trip-groups"],
            _json("One page of groups.", {"$ref": "#/components/schemas/TripGroups"}),
            parameters=_group_parameters(grid, default_resolution),
            unavailable="The database cannot be reached, or (type groups-unavailable) the "
            "serving copy does not hold the groups asked for yet (the detail says what writes "
            "them); retry after Retry-After seconds.",
        ),
        "/health": _get(summaries["/health"], _json("Everything answers.", health_schema)),
        "/openapi.json": _get(
            summaries["/openapi.json"],
            _json(
                "This document, with an ETag (it changes only with the server's settings).",
                {"type": "object", "required": ["openapi", "info", "paths", "components"]},
            ),
            database=False,
        ),
    }
    paths["/openapi.json"]["get"]["responses"]["304"] = {
        "description": "Not modified: the request's If-None-Match holds the current ETag."
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tripflow",
            "version": "0.1.0",
            "description": "Questions about trips loaded into the tripflow warehouse. "
            "Weeks are ISO weeks (Monday 00:00); the weekly average divides the matching "
            "trips by every week of the span, empty weeks included.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
