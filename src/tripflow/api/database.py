"""The API's connection pool: built by create_app, opened on first use, closed at exit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import current_app
from psycopg_pool import ConnectionPool

EXTENSION_KEY = "tripflow.database"


def _configure(conn: psycopg.Connection[Any]) -> None:
    # The API only reads: a stray write becomes an error instead of a change.
    conn.read_only = True


class Database:
    """A lazily opened psycopg pool for one application."""

    def __init__(
        self, url: str, *, lock_timeout: float, timeout: float = 5.0, max_size: int = 8
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.max_size = max_size
        # A publish that rebuilds one week partition's indexes holds that partition until
        # it commits: a question PostGIS must answer from it (the serving copy lacking a
        # batch) gives up after this long and answers 503, instead of holding a thread and
        # its client that long. Questions answered from the weekly summary or the serving
        # copy never wait for a publish.
        self.lock_timeout = lock_timeout
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

    def _open_pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                # Opened here, not in create_app: gunicorn forks workers after importing the
                # app, and each worker needs its own connections.
                pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.max_size,
                    timeout=self.timeout,
                    open=False,
                    configure=_configure,
                    kwargs={"options": f"-c lock_timeout={round(self.lock_timeout * 1000)}"},
                    # A server restart leaves dead connections in the pool; checking on
                    # checkout costs one round trip and turns them into fresh ones.
                    check=ConnectionPool.check_connection,
                    name="tripflow-api",
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Lend a connection for one request; its transaction ends with the block."""
        with self._open_pool().connection() as conn:
            yield conn

    @property
    def is_open(self) -> bool:
        """Tell whether the pool has been opened (by a request that needed the database)."""
        return self._pool is not None

    def close(self) -> None:
        """Close the pool if it was opened; safe to call more than once."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def get_database() -> Database:
    """Return the Database of the current application."""
    database: Database = current_app.extensions[EXTENSION_KEY]
    return database
