"""The API about itself: the endpoint index, health and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from tripflow.api.database import get_database
from tripflow.api.groups import DEFAULT_RESOLUTION_KEY
from tripflow.api.openapi import ENDPOINTS, build_openapi
from tripflow.api.page import render_page
from tripflow.api.params import reject_any
from tripflow.api.trips import get_serving
from tripflow.warehouse import queries

blueprint = Blueprint("meta", __name__)


def prefers_html() -> bool:
    """Tell whether the client ranks HTML above JSON, as browsers do (`*/*` and no Accept
    header at all, as curl and wget send, rank JSON first)."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


@blueprint.get("/")
def index() -> Response:
    """Show a browser the web page; list the endpoints for everyone else."""
    reject_any(request.args.to_dict(flat=False))
    response = render_page() if prefers_html() else jsonify(endpoint_index())
    # Caches keep one answer per Accept header.
    response.vary.add("Accept")
    return response


def endpoint_index() -> dict[str, Any]:
    """List the endpoints with one-line descriptions and example URLs."""
    root = request.host_url.rstrip("/")
    return {
        "name": "tripflow",
        "openapi": root + "/openapi.json",
        "endpoints": [
            {
                "path": endpoint.path,
                "description": endpoint.summary,
                "example": root + endpoint.example,
            }
            for endpoint in ENDPOINTS
        ],
    }


@blueprint.get("/health")
def health() -> dict[str, Any]:
    """Report whether the database and PostGIS answer."""
    reject_any(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        postgis = queries.check_health(conn)
    return {"status": "ok", "database": "ok", "postgis": postgis}


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """Return the OpenAPI 3.1 document, with an ETag: it changes only with the server's
    settings, and the web page reads it on every visit."""
    reject_any(request.args.to_dict(flat=False))
    response = jsonify(
        build_openapi(
            request.script_root + "/",
            get_serving().copy.groups,
            current_app.config[DEFAULT_RESOLUTION_KEY],
        )
    )
    response.add_etag()
    response.headers["Cache-Control"] = "no-cache"
    response.make_conditional(request)
    return response
