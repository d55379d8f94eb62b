"""The Redis tripflow runs as the Celery broker: a declaration of its program, its health
check and its URL.

Debian's `redis-server` in the foreground on loopback, under the stack's supervisord, with
its data under `<home>/redis`. It reads `redis_port`; the stack runs it when the settings
ask for the celery executor without a `redis_url` of their own (`Settings.manages_redis`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import redis

from tripflow.services.supervisor import Program

if TYPE_CHECKING:
    from tripflow.config import Settings

PROGRAM = "redis"


def directory(settings: Settings) -> Path:
    """Return the directory of the server's data."""
    return settings.home_dir / "redis"


def url(settings: Settings) -> str:
    """Return the broker URL of the server."""
    return f"redis://127.0.0.1:{settings.redis_port}/0"


def program(settings: Settings) -> Program:
    """Return the server's program."""
    command = [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(settings.redis_port),
        "--dir",
        str(directory(settings)),
        # Every queued task is written to the append-only file (fsynced each second), so a
        # task the scheduler handed over survives a restart of the broker; its periodic
        # snapshots would only write the same data again.
        "--appendonly",
        "yes",
        "--save",
        "",
    ]
    # Before the workers and the scheduler, which connect to it at once (they retry anyway).
    return Program(PROGRAM, command, priority=100)


def healthy(settings: Settings) -> bool:
    """Tell whether the server answers a PING, from its own directory."""
    client = redis.Redis.from_url(url(settings), socket_timeout=1, socket_connect_timeout=1)
    try:
        # Another Redis on the port (Debian's own service listens on 6379) answers PING as
        # well, and the workers would then share its queues: only ours has our directory.
        answered = client.ping() and client.config_get("dir").get("dir")
        return answered == str(directory(settings))
    except redis.RedisError:
        return False
    finally:
        client.close()
