"""The WSGI entry point for gunicorn: `gunicorn tripflow.api.wsgi:app`."""

from __future__ import annotations

from tripflow.api import create_app
from tripflow.config import Settings

# The only module that reads settings from the environment.
app = create_app(Settings())
