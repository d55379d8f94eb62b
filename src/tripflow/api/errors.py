"""RFC 9457 problem documents for every error the API answers, never an HTML page."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Flask, Response, current_app, request
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestURITooLarge

from tripflow.api.params import ParamError
from tripflow.weeks import MAX_SPAN_WEEKS, SpanTooLongError

PROBLEM_MEDIA_TYPE = "application/problem+json"
INVALID_PARAMETERS = "urn:tripflow:problem:invalid-parameters"
DATABASE_UNAVAILABLE = "urn:tripflow:problem:database-unavailable"
TRIPS_BEING_PUBLISHED = "urn:tripflow:problem:trips-being-published"
INTERNAL_ERROR = "urn:tripflow:problem:internal-error"

logger = logging.getLogger(__name__)


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Build a problem+json response."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    body.update(extra)
    response = Response(
        current_app.json.dumps(body) + "\n", status=status, mimetype=PROBLEM_MEDIA_TYPE
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _invalid_params(error: ParamError) -> Response:
    names = ", ".join(dict.fromkeys(item.name for item in error.invalid))
    return problem(
        400,
        "Invalid query parameters",
        f"The query string has invalid parameters: {names}.",
        type_=INVALID_PARAMETERS,
        invalid_params=[{"name": item.name, "reason": item.reason} for item in error.invalid],
    )


def _span_too_long(error: SpanTooLongError) -> Response:
    # Reached when an end of the range is left open and the stored trips stretch the span
    # past the cap (a range given whole is checked with the parameters). Only the ends the
    # client sent are named; the detail says which to send.
    sent = [name for name in ("from", "to") if name in request.args]
    missing = [name for name in ("from", "to") if name not in request.args]
    between = f" (weeks of {error.first} to {error.last})" if error.first and error.last else ""
    detail = (
        f"the trips this question counts span {error.weeks} weeks{between}, more than the "
        f"limit of {MAX_SPAN_WEEKS} (about 100 years): "
        + (
            f"send {' and '.join(missing)} to ask for a shorter range"
            if missing
            else "ask for a shorter range"
        )
    )
    return problem(
        400,
        "Invalid query parameters",
        detail,
        type_=INVALID_PARAMETERS,
        invalid_params=[{"name": name, "reason": detail} for name in sent],
    )


def _http_error(error: HTTPException) -> Response:
    code = error.code or 500
    headers = {}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))
    return problem(
        code,
        error.name,
        error.description or error.name,
        headers=headers,
    )


def _database_unavailable(error: Exception) -> Response:
    logger.warning("database unavailable: %s", error)
    return problem(
        503,
        "Database unavailable",
        "The trip database cannot be reached right now; try again shortly.",
        type_=DATABASE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


def _trips_being_published(error: Exception) -> Response:
    logger.info("a question gave up waiting for a publish: %s", error)
    return problem(
        503,
        "Trips being published",
        "A large batch of trips is being published and holds the trip table; this question "
        "needs it. Try again in a minute.",
        type_=TRIPS_BEING_PUBLISHED,
        headers={"Retry-After": "60"},
    )


def _internal_error(error: Exception) -> Response:
    logger.exception("unhandled error", exc_info=error)
    return problem(
        500,
        "Internal Server Error",
        "The server failed to answer this request; the error has been logged.",
        type_=INTERNAL_ERROR,
    )


# The longest request target (path and query string) the API reads, in bytes. gunicorn's
# own cap would answer longer lines with an HTML page, so it is lifted (gunicorn_hooks) and
# this one answers with a problem document instead.
MAX_TARGET_BYTES = 8192


def _refuse_long_targets() -> None:
    target = request.full_path if request.query_string else request.path
    size = len(target.encode())
    if size > MAX_TARGET_BYTES:
        raise RequestURITooLarge(
            f"The request target is {size:,} bytes long, more than the "
            f"{MAX_TARGET_BYTES:,} this API reads."
        )


def register_error_handlers(app: Flask) -> None:
    """Make every error of the application answer with a problem document."""
    app.before_request(_refuse_long_targets)
    app.register_error_handler(ParamError, _invalid_params)
    app.register_error_handler(SpanTooLongError, _span_too_long)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(PoolTimeout, _database_unavailable)
    # A subclass of OperationalError: Flask picks the most specific handler.
    app.register_error_handler(psycopg.errors.LockNotAvailable, _trips_being_published)
    app.register_error_handler(psycopg.OperationalError, _database_unavailable)
    app.register_error_handler(Exception, _internal_error)
