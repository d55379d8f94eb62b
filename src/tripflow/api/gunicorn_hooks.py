"""gunicorn settings of the API (`gunicorn -c python:tripflow.api.gunicorn_hooks`)."""

from __future__ import annotations

from typing import Any

# No cap on the request line in gunicorn, whose 414 is an HTML page: the application refuses
# targets over errors.MAX_TARGET_BYTES itself, with a problem document. (gunicorn takes 0
# for "unlimited" or a cap of at most 8190 bytes, which would answer longer ones its way.)
limit_request_line = 0


def post_worker_init(worker: Any) -> None:
    """Warm a worker up once it has loaded the application, before it takes requests."""
    from tripflow.api import groups, trips

    trips.warm_up(worker.wsgi)
    groups.warm_up(worker.wsgi)
