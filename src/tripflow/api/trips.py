"""Trip questions: the weekly average in an area, and the regions and datasources known."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

import psycopg
from cachetools import LRUCache
from flask import Blueprint, Flask, current_app, request

from tripflow import answers
from tripflow.api.database import get_database
from tripflow.api.params import parse_area_query, reject_any
from tripflow.warehouse import queries

blueprint = Blueprint("trips", __name__)

ANSWER_CACHE_KEY = "tripflow.answers"
SERVING_KEY = "tripflow.serving"


def get_serving() -> answers.Serving:
    """Return the application's serving copy."""
    serving: answers.Serving = current_app.extensions[SERVING_KEY]
    return serving


class AnswerCache:
    """Answers by (question, data version): a publish that adds trips changes the version,
    so a kept answer is always the one the data gives now. Per worker process, LRU."""

    def __init__(self, size: int) -> None:
        self._answers: LRUCache[tuple[Any, ...], dict[str, Any]] | None = (
            LRUCache(maxsize=size) if size > 0 else None
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> dict[str, Any] | None:
        """Return the kept answer of a key, if any."""
        if self._answers is None:
            return None
        with self._lock:
            return self._answers.get(key)

    def put(self, key: tuple[Any, ...], answer: dict[str, Any]) -> None:
        """Keep an answer."""
        if self._answers is not None:
            with self._lock:
                self._answers[key] = answer


def get_answer_cache() -> AnswerCache:
    """Return the application's answer cache."""
    cache: AnswerCache = current_app.extensions[ANSWER_CACHE_KEY]
    return cache


def cached_answer(
    question: Hashable,
    answer: Callable[[psycopg.Connection[Any], tuple[Any, ...]], dict[str, Any]],
) -> dict[str, Any]:
    """Return the kept answer to a question at the data version a snapshot sees, or answer
    it in that snapshot (`answer(conn, version)`) and keep it."""
    cache = get_answer_cache()
    with get_database().connection() as conn, queries.snapshot(conn):
        version = queries.data_version(conn)
        key = (version, question)
        found = cache.get(key)
        if found is None:
            found = answer(conn, version)
            cache.put(key, found)
        return found


def warm_up(app: Flask) -> None:
    """Prepare a worker before it serves: summary read, DuckDB open, segments attached.

    A failure only costs the first question that time: it is logged, never raised."""
    with app.app_context():
        try:
            with get_database().connection() as conn:
                answers.warm_up(conn, get_serving())
        except Exception as error:
            current_app.logger.warning("warm-up skipped: %s", error)


@blueprint.get("/weekly-average")
def weekly_average() -> dict[str, Any]:
    """Answer the weekly average number of trips in an area."""
    # Parsed before any database access: bad input never costs a connection.
    query = parse_area_query(request.args.to_dict(flat=False))
    return cached_answer(
        query,
        lambda conn, version: answers.weekly_average(
            conn, query, serving=get_serving(), version=version
        ).to_json(),
    )


@blueprint.get("/regions")
def regions() -> dict[str, Any]:
    """List the regions with their trip counts."""
    reject_any(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        return {"regions": queries.list_regions(conn)}


@blueprint.get("/regions/extents")
def region_extents() -> dict[str, Any]:
    """List the regions with their trips and the box around their points (the page's map)."""
    reject_any(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        return {"regions": queries.region_extents(conn)}


@blueprint.get("/datasources")
def datasources() -> dict[str, Any]:
    """List the datasources with their trip counts."""
    reject_any(request.args.to_dict(flat=False))
    with get_database().connection() as conn:
        return {"datasources": queries.list_datasources(conn)}
