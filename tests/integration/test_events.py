"""GET /ingestions/events: every status change, in order, resumable after a dropped
connection and after an API restart, on a real PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from werkzeug.test import TestResponse

from tests.integration.test_api import close_pool
from tripflow.api import create_app
from tripflow.api.events import HUB_KEY, EventHub
from tripflow.config import Settings
from tripflow.warehouse.ingestions import CHANNEL, Status, notify, record_failure, set_status
from tripflow.warehouse.roles import API_LOGIN

STREAM = "/ingestions/events"
STEPS = [Status.CLAIMED, Status.PROCESSED, Status.STAGED, Status.PUBLISHED, Status.DONE]


def make_app(home: Path, database_url: str, **settings: Any) -> Flask:
    # Built as `serve` builds it: from settings, through the API's own role.
    values = {"api_stream_heartbeat": 0.2, **settings}
    return create_app(Settings(_env_file=None, home=home, database_url=database_url, **values))


def stop_app(app: Flask) -> None:
    hub: EventHub = app.extensions[HUB_KEY]
    hub.close()
    close_pool(app)


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    application = make_app(tmp_path / "home", database_url)
    yield application
    stop_app(application)


def new_batch(url: str) -> int:
    """Add a batch the way claim does (status claimed, announced)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO ingestion_batch (status, files) VALUES ('claimed', 1) RETURNING batch_id"
        ).fetchone()
        assert row is not None
        notify(conn, row[0])
    return int(row[0])


def advance(url: str, batch_id: int, *steps: Status) -> None:
    """Move a batch through steps, one committed transaction each."""
    for step in steps:
        with psycopg.connect(url) as conn:
            set_status(conn, batch_id, step)


def open_stream(app: Flask, query: str = "", headers: dict[str, str] | None = None) -> TestResponse:
    response = app.test_client().get(STREAM + query, headers=headers or {}, buffered=False)
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "text/event-stream"
    return response


def take(response: TestResponse, count: int, seconds: float = 30) -> list[dict[str, Any]]:
    """Read `count` events off a stream (heartbeats keep the loop turning)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    for chunk in response.response:
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        if text.startswith("id: "):
            fields = dict(line.split(": ", 1) for line in text.strip().splitlines())
            data = json.loads(fields["data"])
            assert fields["event"] == "batch" and int(fields["id"]) == data["event_id"]
            events.append(data)
            if len(events) == count:
                return events
        assert time.monotonic() < deadline, f"{len(events)} of {count} events arrived"
    raise AssertionError("the stream ended")


def heartbeats(response: TestResponse, count: int) -> list[str]:
    seen = []
    for chunk in response.response:
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        assert not text.startswith("id: "), text
        if text.startswith(":"):
            seen.append(text)
            if len(seen) == count:
                return seen
    raise AssertionError("the stream ended")


def test_a_stream_sends_every_status_change_in_order(app: Flask, database_url: str) -> None:
    response = open_stream(app)
    try:
        first = new_batch(database_url)
        advance(database_url, first, *STEPS[1:])
        second = new_batch(database_url)
        events = take(response, 6)
    finally:
        response.close()
    assert [(event["batch_id"], event["status"]) for event in events] == [
        *[(first, str(step)) for step in STEPS],
        (second, "claimed"),
    ]
    ids = [event["event_id"] for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[3]["rows_read"] is None and events[0]["files"] == 1
    assert all(event["at"] for event in events)


def test_a_reconnecting_client_gets_what_it_missed_and_nothing_twice(
    app: Flask, database_url: str
) -> None:
    response = open_stream(app)
    batch = new_batch(database_url)
    advance(database_url, batch, Status.PROCESSED)
    seen = take(response, 2)
    response.close()
    # Changes while the client is away.
    advance(database_url, batch, Status.STAGED, Status.PUBLISHED)
    again = open_stream(app, headers={"Last-Event-ID": str(seen[-1]["event_id"])})
    try:
        advance(database_url, batch, Status.DONE)
        rest = take(again, 3)
    finally:
        again.close()
    statuses = [event["status"] for event in seen + rest]
    assert statuses == [str(step) for step in STEPS]


def test_events_outlive_an_api_restart(tmp_path: Path, database_url: str) -> None:
    app = make_app(tmp_path / "home", database_url)
    response = open_stream(app)
    batch = new_batch(database_url)
    seen = take(response, 1)
    response.close()
    stop_app(app)
    # The API is down while the batch moves on.
    advance(database_url, batch, *STEPS[1:])
    restarted = make_app(tmp_path / "home", database_url)
    try:
        resumed = open_stream(restarted, f"?last_event_id={seen[0]['event_id']}")
        rest = take(resumed, 4)
        resumed.close()
        # From the start: the whole history, the batch from before too.
        replay = open_stream(restarted, "?last_event_id=0")
        everything = take(replay, 5)
        replay.close()
    finally:
        stop_app(restarted)
    assert [event["status"] for event in rest] == [str(step) for step in STEPS[1:]]
    assert [event["event_id"] for event in everything] == [
        seen[0]["event_id"],
        *(event["event_id"] for event in rest),
    ]


def test_an_idle_stream_sends_heartbeats(app: Flask) -> None:
    response = open_stream(app)
    try:
        assert heartbeats(response, 3) == [": heartbeat\n\n"] * 3
    finally:
        response.close()


def test_a_stream_beyond_the_limit_gets_a_problem_and_a_closed_one_frees_its_place(
    tmp_path: Path, database_url: str
) -> None:
    app = make_app(tmp_path / "home", database_url, api_max_streams=1)
    try:
        first = open_stream(app)
        refused = app.test_client().get(STREAM)
        assert refused.status_code == 503
        assert refused.content_type == "application/problem+json"
        assert refused.headers["Retry-After"]
        first.close()
        open_stream(app).close()
    finally:
        stop_app(app)


@pytest.mark.parametrize(
    ("query", "headers", "named"),
    [
        ("?last_event_id=abc", {}, "last_event_id"),
        ("?last_event_id=-1", {}, "last_event_id"),
        ("?last_event_id=1&last_event_id=2", {}, "last_event_id"),
        ("?since=1", {}, "since"),
        ("", {"Last-Event-ID": "\uff11\uff12"}, "Last-Event-ID"),
        ("", {"Last-Event-ID": "9" * 40}, "Last-Event-ID"),
    ],
)
def test_a_bad_last_event_id_is_a_problem_naming_it(
    app: Flask, query: str, headers: dict[str, str], named: str
) -> None:
    response = app.test_client().get(STREAM + query, headers=headers)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert [item["name"] for item in response.get_json()["invalid_params"]] == [named]


def test_events_are_numbered_in_commit_order(database_url: str) -> None:
    # Two batches: a row lock on one batch would not order writers of different batches.
    first, second = new_batch(database_url), new_batch(database_url)
    writer = threading.Thread(
        target=lambda: (advance(database_url, second, STEPS[1]), finished.set())
    )
    finished = threading.Event()
    with psycopg.connect(database_url) as early:
        # The first writer numbers its event, then waits before committing.
        set_status(early, first, Status.PROCESSED)
        writer.start()
        # Had the second writer committed a larger number meanwhile, a reader would have
        # seen it and skipped the first writer's smaller one for ever.
        assert not finished.wait(1.0)
    writer.join(30)
    assert finished.is_set()
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT batch_id, payload->>'status' FROM ingestion_event"
            " WHERE batch_id IN (%s, %s) ORDER BY event_id",
            (first, second),
        ).fetchall()
    assert rows == [
        (first, "claimed"),
        (second, "claimed"),
        (first, "processed"),
        (second, "processed"),
    ]


def test_the_stream_reads_through_the_api_role(app: Flask) -> None:
    hub: EventHub = app.extensions[HUB_KEY]
    with psycopg.connect(hub.url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (API_LOGIN,)


def test_a_long_error_is_kept_whole_and_announced_cut_short(app: Flask, database_url: str) -> None:
    batch = new_batch(database_url)
    error = "spark: " + "x" * 20_000
    with psycopg.connect(database_url) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        listener.commit()
        response = open_stream(app)
        try:
            with psycopg.connect(database_url) as conn:
                assert record_failure(conn, batch, error) == 1
            (event,) = take(response, 1)
        finally:
            response.close()
        (note,) = list(listener.notifies(timeout=10, stop_after=1))
    assert event["error"] == error
    assert json.loads(note.payload)["error"] == error[:2000]
