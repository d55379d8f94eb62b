"""The OpenAPI 3.1 description of the API, and the endpoint list of its index page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tripflow.api.params import DEFAULT_INGESTION_LIMIT, MAX_INGESTION_LIMIT
from tripflow.warehouse.ingestions import Status
from tripflow.weeks import MAX_SPAN_WEEKS, Match


@dataclass(frozen=True)
class Endpoint:
    """One public route: its path, what it answers, and an example request."""

    path: str
    summary: str
    example: str


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/", "List the endpoints with examples.", "/"),
    Endpoint(
        "/weekly-average",
        "Weekly average number of trips in a bounding box and/or region, over ISO weeks.",
        "/weekly-average?bbox=14.3,49.9,14.6,50.2&from=2018-05-01&to=2018-06-01&match=both",
    ),
    Endpoint("/regions", "Regions with their number of trips.", "/regions"),
    Endpoint("/datasources", "Datasources with their number of trips.", "/datasources"),
    Endpoint(
        "/ingestions",
        "Newest ingestion batches first, each with its files and row counts.",
        "/ingestions?limit=10",
    ),
    Endpoint("/health", "Database and PostGIS reachability.", "/health"),
    Endpoint("/openapi.json", "This API described as OpenAPI 3.1.", "/openapi.json"),
)

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INTEGER = {"type": ["integer", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
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
    _query(
        "bbox",
        "Bounding box `min_lon,min_lat,max_lon,max_lat` in EPSG:4326; edges are inside; "
        "min may equal max (a line or a point).",
        {"type": "string", "pattern": r"^[^,]+,[^,]+,[^,]+,[^,]+$"},
        "14.3,49.9,14.6,50.2",
    ),
    _query(
        "region",
        "Only trips of this region (exact name).",
        {"type": "string", "minLength": 1},
        "Prague",
    ),
    _query(
        "datasource",
        "Only trips of this datasource (exact name).",
        {"type": "string", "minLength": 1},
        "funny_car",
    ),
    _query(
        "from",
        "Inclusive start, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS` (wall-clock time). Without it "
        "the span starts at the week of the earliest trip of the region/datasource.",
        {"type": "string"},
        "2018-05-01",
    ),
    _query(
        "to",
        "Exclusive end, same formats; must be later than `from`. Without it the span ends at "
        "the week of the latest trip of the region/datasource. An end at Monday 00:00 does not "
        f"add that week. A span may hold at most {MAX_SPAN_WEEKS} weeks.",
        {"type": "string"},
        "2018-06-01",
    ),
    _query(
        "match",
        "Which end of a trip must be inside the box.",
        {"type": "string", "enum": [str(mode) for mode in Match], "default": str(Match.BOTH)},
        str(Match.BOTH),
    ),
]

_NAMED_COUNT = {
    "type": "object",
    "required": ["name", "trips"],
    "properties": {"name": {"type": "string"}, "trips": {"type": "integer"}},
}

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
                "items": {
                    "type": "object",
                    "required": ["name", "reason"],
                    "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
                },
            },
        },
    },
    "WeeklyAverage": {
        "type": "object",
        "required": [
            "trips",
            "weeks",
            "weekly_average",
            "first_week",
            "last_week",
            "series",
            "query",
        ],
        "properties": {
            "trips": {"type": "integer", "description": "Matching trips in the span."},
            "weeks": {"type": "integer", "description": "ISO weeks in the span, empty ones too."},
            "weekly_average": {"type": "number", "description": "trips / weeks (0 if no week)."},
            "first_week": {"type": ["string", "null"], "format": "date"},
            "last_week": {"type": ["string", "null"], "format": "date"},
            "series": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["week", "week_start", "trips"],
                    "properties": {
                        "week": {"type": "string", "example": "2018-W21"},
                        "week_start": {"type": "string", "format": "date"},
                        "trips": {"type": "integer"},
                    },
                },
            },
            "query": {
                "type": "object",
                "description": "The question as understood.",
                "properties": {
                    "bbox": {"type": ["array", "null"], "items": {"type": "number"}},
                    "region": _NULLABLE_STRING,
                    "datasource": _NULLABLE_STRING,
                    "from": _NULLABLE_STRING,
                    "to": _NULLABLE_STRING,
                    "match": {"type": "string", "enum": [str(mode) for mode in Match]},
                },
            },
        },
    },
    "IngestionFile": {
        "type": "object",
        "properties": {
            "file_id": {"type": "integer"},
            "name": {"type": "string"},
            "status": {"type": "string", "enum": ["claimed", "loaded", "rejected"]},
            "checksum": {"type": "string"},
            "size_bytes": {"type": "integer"},
            "landing_path": {"type": "string"},
            "processed_path": _NULLABLE_STRING,
            "same_as_file_id": _NULLABLE_INTEGER,
            "rows_read": _NULLABLE_INTEGER,
            "rows_loaded": _NULLABLE_INTEGER,
            "rows_rejected": _NULLABLE_INTEGER,
            "rows_duplicate": _NULLABLE_INTEGER,
            "error": _NULLABLE_STRING,
            "claimed_at": {"type": "string", "format": "date-time"},
            "finished_at": _NULLABLE_TIME,
        },
    },
    "IngestionBatch": {
        "type": "object",
        "properties": {
            "batch_id": {"type": "integer"},
            # Every status a batch can have, `failed` (set aside) included.
            "status": {"type": "string", "enum": [str(status) for status in Status]},
            "file_count": {"type": "integer"},
            "rows_read": _NULLABLE_INTEGER,
            "rows_loaded": _NULLABLE_INTEGER,
            "rows_rejected": _NULLABLE_INTEGER,
            "rows_duplicate": _NULLABLE_INTEGER,
            "rows_staged": _NULLABLE_INTEGER,
            "attempts": {"type": "integer"},
            "error": _NULLABLE_STRING,
            "claimed_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "finished_at": _NULLABLE_TIME,
            "files": {"type": "array", "items": {"$ref": "#/components/schemas/IngestionFile"}},
        },
    },
}

_BAD_REQUEST = _problem("Invalid query parameters (unknown, repeated or malformed).")
_UNAVAILABLE = _problem(
    "The database cannot be reached, or (type trips-being-published) a large publish holds "
    "the trips this question needs; retry after Retry-After seconds."
)


def _get(
    summary: str,
    ok: dict[str, Any],
    *,
    parameters: list[dict[str, Any]] | None = None,
    database: bool = True,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok, "400": _BAD_REQUEST}
    if database:
        responses["503"] = _UNAVAILABLE
    responses["default"] = _problem("Any other error, as a problem document.")
    return {"get": {"summary": summary, "parameters": parameters or [], "responses": responses}}


def build_openapi(server_url: str = "/") -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the API."""
    summaries = {endpoint.path: endpoint.summary for endpoint in ENDPOINTS}
    index_schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "endpoints": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "description": {"type": "string"},
                        "example": {"type": "string"},
                    },
                },
            },
        },
    }
    health_schema = {
        "type": "object",
        "required": ["status", "database", "postgis"],
        "properties": {
            "status": {"const": "ok"},
            "database": {"const": "ok"},
            "postgis": {"type": "string", "example": "3.3"},
        },
    }
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
        "/": _get(summaries["/"], _json("The endpoints.", index_schema), database=False),
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
                {
                    "type": "object",
                    "properties": {"regions": {"type": "array", "items": _NAMED_COUNT}},
                },
            ),
        ),
        "/datasources": _get(
            summaries["/datasources"],
            _json(
                "Datasources sorted by name.",
                {
                    "type": "object",
                    "properties": {"datasources": {"type": "array", "items": _NAMED_COUNT}},
                },
            ),
        ),
        "/ingestions": _get(
            summaries["/ingestions"],
            _json(
                "Batches, newest first.",
                {
                    "type": "object",
                    "properties": {
                        "limit": {"type": "integer"},
                        "ingestions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/IngestionBatch"},
                        },
                    },
                },
            ),
            parameters=[limit],
        ),
        "/health": _get(summaries["/health"], _json("Everything answers.", health_schema)),
        "/openapi.json": _get(
            summaries["/openapi.json"],
            _json("This document.", {"type": "object"}),
            database=False,
        ),
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
