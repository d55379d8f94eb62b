"""Ingestion bookkeeping: which batches and files were loaded, with their counts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from tripflow.api.database import get_database
from tripflow.api.params import parse_ingestion_limit
from tripflow.warehouse import queries

blueprint = Blueprint("ingestions", __name__)


@blueprint.get("/ingestions")
def ingestions() -> dict[str, Any]:
    """List the newest ingestion batches with their files."""
    limit = parse_ingestion_limit(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        return {"limit": limit, "ingestions": queries.list_ingestions(conn, limit=limit)}
