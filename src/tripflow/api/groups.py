"""Similar-trip groups: trips with the same region, H3 cells of both ends and time of day."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from tripflow import answers
from tripflow.api.errors import problem
from tripflow.api.params import parse_group_query
from tripflow.api.trips import cached_answer, get_serving
from tripflow.serving.groups import GroupQuery

blueprint = Blueprint("groups", __name__)

DEFAULT_RESOLUTION_KEY = "tripflow.group_resolution"
GROUPS_UNAVAILABLE = "urn:tripflow:problem:groups-unavailable"


@blueprint.get("/trip-groups")
def trip_groups() -> dict[str, Any]:
    """List the largest groups of similar trips, one page at a time."""
    serving = get_serving()
    query = parse_group_query(
        request.args.to_dict(flat=False),
        serving.copy.groups,
        current_app.config[DEFAULT_RESOLUTION_KEY],
    )
    return _answer(query)


def _answer(query: GroupQuery) -> dict[str, Any]:
    return cached_answer(
        query,
        lambda conn, version: answers.trip_groups(
            conn, query, serving=get_serving(), version=version
        ),
    )


def warm_up(app: Flask) -> None:
    """Answer the page's first question (the default groups) before a worker serves, so
    that no visitor waits for the broadest sum. A failure is logged, never raised."""
    with app.app_context():
        try:
            _answer(
                parse_group_query(
                    {}, get_serving().copy.groups, current_app.config[DEFAULT_RESOLUTION_KEY]
                )
            )
        except Exception as error:
            current_app.logger.warning("groups warm-up skipped: %s", error)


@blueprint.app_errorhandler(answers.GroupsUnavailable)
def _groups_unavailable(error: answers.GroupsUnavailable) -> Response:
    current_app.logger.warning("trip groups unavailable: %s", error)
    return problem(
        503,
        "Trip groups unavailable",
        str(error),
        type_=GROUPS_UNAVAILABLE,
        headers={"Retry-After": "60"},
    )
