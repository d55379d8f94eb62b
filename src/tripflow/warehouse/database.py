"""Connections to the warehouse and its schema migrations."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import psycopg
from yoyo import get_backend, read_migrations

from tripflow.warehouse import roles

log = logging.getLogger(__name__)


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection to the warehouse."""
    return psycopg.connect(url, autocommit=autocommit, application_name="tripflow")


def _yoyo_url(url: str) -> str:
    # yoyo picks its driver from the URL scheme; ours is psycopg 3.
    scheme, _, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if scheme in {"postgresql", "postgres"} else url


def migrate(url: str, *, before: str | None = None) -> list[str]:
    """Apply the migrations not yet applied, in order (with `before`, only those whose id
    sorts before it: a database of an earlier schema, for tests), then give the API's role
    SELECT on what it reads; return the ids applied."""
    directory = Path(str(resources.files("tripflow.warehouse") / "migrations"))
    backend = get_backend(_yoyo_url(url))
    try:
        migrations = read_migrations(str(directory))
        if before is not None:
            migrations = migrations.filter(lambda migration: migration.id < before)
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    finally:
        # yoyo leaves its connection open; an unclosed psycopg connection warns.
        backend.connection.close()
    with connect(url, autocommit=True) as conn:
        problem = roles.grant_api_access(conn, url)
    if problem:
        log.warning("the API keeps no role of its own: %s", problem)
    return [migration.id for migration in pending]


def applied_migrations(url: str) -> list[str]:
    """Return the ids of the migrations applied to a database."""
    with connect(url) as conn:
        rows = conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY migration_id")
        return [str(row[0]) for row in rows]
