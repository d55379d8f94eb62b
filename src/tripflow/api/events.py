"""Ingestion status pushed over HTTP: `GET /ingestions/events` as Server-Sent Events.

Every status change is a row of `ingestion_event`, numbered in commit order and announced
on PostgreSQL's ingestion channel. Each API process keeps one listening connection (an
EventHub), whatever the number of open streams; a stream that resumes (`Last-Event-ID`) or
falls behind the hub's memory reads what it missed from the table, so neither a dropped
connection nor an API restart loses an event."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from flask import Blueprint, Response, current_app, request
from psycopg.rows import dict_row

from tripflow.api.database import Database, get_database
from tripflow.api.errors import problem
from tripflow.api.params import InvalidParam, ParamError, check_names
from tripflow.warehouse.ingestions import CHANNEL

log = logging.getLogger(__name__)

blueprint = Blueprint("events", __name__)

HUB_KEY = "tripflow.events"
HEARTBEAT_KEY = "TRIPFLOW_STREAM_HEARTBEAT"
# Events read from the table per query: a client far behind catches up in pages.
PAGE = 500
READ_EVENTS = (
    "SELECT event_id, at, payload FROM ingestion_event WHERE event_id > %s"
    " ORDER BY event_id LIMIT %s"
)
LAST_EVENT_ID = "Last-Event-ID"
# The query parameter for a first connection that wants the past too (EventSource sends
# the header only when it reconnects).
LAST_EVENT_PARAMETER = "last_event_id"
# Seconds a browser waits before reconnecting a dropped stream.
RETRY_MILLISECONDS = 3000


@dataclass(frozen=True)
class Event:
    """One status change of a batch."""

    event_id: int
    data: dict[str, Any]

    def render(self) -> str:
        """Render the event as one SSE message."""
        return f"id: {self.event_id}\nevent: batch\ndata: {json.dumps(self.data)}\n\n"


def _event(row: dict[str, Any]) -> Event:
    at = row["at"]
    data = {"event_id": row["event_id"], **row["payload"]}
    data["at"] = at.isoformat() if isinstance(at, datetime) else at
    return Event(int(row["event_id"]), data)


def read_events(conn: psycopg.Connection[Any], after: int, limit: int = PAGE) -> list[Event]:
    """Read the events numbered after `after`, oldest first."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(READ_EVENTS, (after, limit))
        return [_event(row) for row in cursor]


class EventHub:
    """One LISTEN connection per API process, shared by every stream it serves.

    It keeps the latest events in memory: `covered_after` is the id after which it holds
    every event, so a stream asking for events after that id is served from memory, and
    any other reads the table."""

    def __init__(self, url: str, *, max_streams: int, keep: int = 1024) -> None:
        self.url = url
        self.streams = threading.BoundedSemaphore(max_streams)
        self._events: deque[Event] = deque(maxlen=keep)
        self._condition = threading.Condition()
        self._latest = -1
        self.covered_after = -1
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connection: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        """Start listening (once per process, on the first stream: gunicorn forks first)."""
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="tripflow-events", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop listening."""
        self._stopping.set()
        connection = self._connection
        if connection is not None:
            connection.cancel_safe()
        with self._condition:
            self._condition.notify_all()

    def _listen(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    self._connection = conn
                    conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    self._catch_up(conn)
                    while not self._stopping.is_set():
                        # Any notification means new rows; the table says which. A quiet
                        # minute reads it anyway, in case a notification was missed.
                        for _ in conn.notifies(timeout=60.0, stop_after=1):
                            pass
                        self._catch_up(conn)
            except psycopg.Error as error:
                if self._stopping.is_set():
                    break
                log.warning("event listener lost its connection (%s); reconnecting", error)
            finally:
                self._connection = None
            self._stopping.wait(delay)
            delay = min(delay * 2, 10.0)

    def _catch_up(self, conn: psycopg.Connection[Any]) -> None:
        if self._latest < 0:
            row = conn.execute("SELECT coalesce(max(event_id), 0) FROM ingestion_event").fetchone()
            with self._condition:
                self._latest = self.covered_after = int(row[0]) if row else 0
                self._condition.notify_all()
            return
        while events := read_events(conn, self._latest):
            with self._condition:
                for event in events:
                    if len(self._events) == self._events.maxlen:
                        self.covered_after = self._events[0].event_id
                    self._events.append(event)
                self._latest = events[-1].event_id
                self._condition.notify_all()

    def wait_after(self, after: int, timeout: float) -> list[Event] | None:
        """Return the events after `after` once there are any (an empty list after
        `timeout`), or None when memory does not reach back that far."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._latest > after or self._stopping.is_set(), timeout
            )
            if self._latest < 0 or after < self.covered_after:
                return None
            return [event for event in self._events if event.event_id > after]


def get_hub() -> EventHub:
    """Return the application's event hub, started."""
    hub: EventHub = current_app.extensions[HUB_KEY]
    hub.start()
    return hub


def _parse_last_event_id() -> int | None:
    args = request.args.to_dict(flat=False)
    problems = check_names(args, (LAST_EVENT_PARAMETER,))
    parameter = args.get(LAST_EVENT_PARAMETER) or []
    sources: list[tuple[str, str | None]] = [
        (LAST_EVENT_ID, request.headers.get(LAST_EVENT_ID)),
        (LAST_EVENT_PARAMETER, parameter[0] if parameter else None),
    ]
    found: int | None = None
    for name, text in sources:
        if text is None or any(problem.name == name for problem in problems):
            continue
        cleaned = text.strip()
        if not cleaned.isascii() or not cleaned.isdigit() or len(cleaned) > 18:
            problems.append(InvalidParam(name, f"{text!r} is not an event id (0 or more)"))
        elif found is None:
            # The header wins: a browser sends it on reconnect to a URL that has the param.
            found = int(cleaned)
    if problems:
        raise ParamError(problems)
    return found


def _stream(database: Database, hub: EventHub, after: int, heartbeat: float) -> Iterator[str]:
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    while True:
        events = hub.wait_after(after, heartbeat)
        if events is None:
            with database.connection() as conn:
                events = read_events(conn, after)
        if not events:
            # Keeps proxies from closing an idle stream; writing it is also how a client
            # that left is noticed, and its thread freed.
            yield ": heartbeat\n\n"
            continue
        for event in events:
            yield event.render()
            after = event.event_id


class _Opened:
    """A stream's body that gives its place back when the server closes it, even if it
    never started (a generator's `finally` would not run then)."""

    def __init__(self, body: Iterator[str], hub: EventHub) -> None:
        self._body = body
        self._hub: EventHub | None = hub

    def __iter__(self) -> Iterator[str]:
        return self._body

    def close(self) -> None:
        """Stop the stream and free its place."""
        try:
            self._body.close()  # type: ignore[attr-defined]
        finally:
            hub, self._hub = self._hub, None
            if hub is not None:
                hub.streams.release()


@blueprint.get("/ingestions/events")
def ingestion_events() -> Response:
    """Stream every status change of every batch as Server-Sent Events."""
    after = _parse_last_event_id()
    database = get_database()
    if after is None:
        # A new client hears what happens from now on (GET /ingestions gives the state).
        with database.connection() as conn:
            row = conn.execute("SELECT coalesce(max(event_id), 0) FROM ingestion_event")
            after = int(row.fetchone()[0])  # type: ignore[index]
    hub = get_hub()
    if not hub.streams.acquire(blocking=False):
        return problem(
            503,
            "Too many event streams",
            "This API process serves as many event streams as it is configured for; "
            "try again shortly.",
            headers={"Retry-After": "10"},
        )
    heartbeat = current_app.config[HEARTBEAT_KEY]
    body = _Opened(_stream(database, hub, after, heartbeat), hub)
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    # Proxies that buffer (nginx) pass each event on at once.
    response.headers["X-Accel-Buffering"] = "no"
    return response
