"""The Flask application: factory, pool wiring, blueprints and error handlers."""

from __future__ import annotations

import atexit

from flask import Flask

from tripflow.answers import Serving
from tripflow.api import events, groups, ingestions, insights, meta, page, trips
from tripflow.api.database import EXTENSION_KEY, Database, get_database
from tripflow.api.errors import register_error_handlers
from tripflow.config import Settings

__all__ = ["create_app", "get_database"]

# Seconds a request waits for a connection before answering 503.
DEFAULT_POOL_TIMEOUT = 5.0


def create_app(settings: Settings | None = None, *, database_url: str | None = None) -> Flask:
    """Build the API application; the pool connects on the first request that needs it."""
    app = Flask(__name__, static_folder=None)
    # Answers keep the field order of the code (trips before weeks before series).
    app.json.sort_keys = False  # type: ignore[attr-defined]
    settings = settings or Settings()
    if database_url is None:
        # The API's own role (SELECT on what it reads), not the pipeline's owner.
        database_url = settings.api_database_dsn
    database = Database(
        database_url, timeout=DEFAULT_POOL_TIMEOUT, lock_timeout=settings.api_lock_timeout
    )
    app.extensions[EXTENSION_KEY] = database
    app.extensions[trips.ANSWER_CACHE_KEY] = trips.AnswerCache(settings.api_answer_cache)
    app.extensions[trips.SERVING_KEY] = Serving.from_settings(settings)
    hub = events.EventHub(database_url, max_streams=settings.api_max_streams)
    app.extensions[events.HUB_KEY] = hub
    app.config[events.HEARTBEAT_KEY] = settings.api_stream_heartbeat
    app.config[groups.DEFAULT_RESOLUTION_KEY] = settings.group_resolutions[0]
    # Flask has no end-of-process hook; the pool lives as long as the worker process.
    atexit.register(database.close)
    atexit.register(hub.close)
    register_error_handlers(app)
    app.register_blueprint(meta.blueprint)
    app.register_blueprint(page.blueprint)
    app.register_blueprint(trips.blueprint)
    app.register_blueprint(ingestions.blueprint)
    app.register_blueprint(events.blueprint)
    app.register_blueprint(insights.blueprint)
    app.register_blueprint(groups.blueprint)
    return app
