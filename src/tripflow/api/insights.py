"""The first questions people ask of trip data besides the weekly average, answered from
the weekly summary (instant at any number of trips)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from tripflow.api.database import get_database
from tripflow.api.params import InvalidParam, ParamError, check_names, parse_name, reject_any
from tripflow.warehouse import queries

blueprint = Blueprint("insights", __name__, url_prefix="/insights")


@blueprint.get("/latest-datasource-of-top-regions")
def latest_datasource_of_top_regions() -> dict[str, Any]:
    """Of the two regions with the most trips, tell which datasource appeared latest."""
    reject_any(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        return queries.latest_datasource_of_top_regions(conn)


def _parse_datasource(args: dict[str, list[str]]) -> str:
    problems = check_names(args, ("datasource",))
    if not problems:
        values = args.get("datasource")
        if not values:
            problems.append(InvalidParam("datasource", "required: the datasource to look for"))
        else:
            try:
                return parse_name(values[0])
            except ValueError as error:
                problems.append(InvalidParam("datasource", str(error)))
    raise ParamError(problems)


@blueprint.get("/regions-of-datasource")
def regions_of_datasource() -> dict[str, Any]:
    """List the regions in which a datasource has appeared."""
    datasource = _parse_datasource(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        return {
            "datasource": datasource,
            "regions": queries.regions_of_datasource(conn, datasource),
        }
