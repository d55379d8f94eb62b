"""Trip questions: the weekly average in an area, and the regions and datasources known."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from tripflow.api.database import get_database
from tripflow.api.params import parse_area_query, reject_any
from tripflow.warehouse import queries

blueprint = Blueprint("trips", __name__)


@blueprint.get("/weekly-average")
def weekly_average() -> dict[str, Any]:
    """Answer the weekly average number of trips in an area."""
    # Parsed before any database access: bad input never costs a connection.
    query = parse_area_query(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        return queries.weekly_average(conn, query).to_json()


@blueprint.get("/regions")
def regions() -> dict[str, Any]:
    """List the regions with their trip counts."""
    reject_any(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        return {"regions": queries.list_regions(conn)}


@blueprint.get("/datasources")
def datasources() -> dict[str, Any]:
    """List the datasources with their trip counts."""
    reject_any(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        return {"datasources": queries.list_datasources(conn)}
