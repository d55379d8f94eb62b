"""gunicorn settings of the API (`gunicorn -c python:tripflow.api.gunicorn_hooks`)."""

from __future__ import annotations

from typing import Any


def post_worker_init(worker: Any) -> None:
    """Warm a worker up once it has loaded the application, before it takes requests."""
    from tripflow.api.trips import warm_up

    warm_up(worker.wsgi)
