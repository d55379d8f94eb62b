"""The Kafka broker as the stack declares it: its cluster id."""

from __future__ import annotations

import uuid

import pytest

from tripflow.services import kafka


def test_a_cluster_id_never_starts_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8... encodes to "-" first (the storage tool read it as an option and failed), then
    # an ordinary id.
    ids = iter([uuid.UUID(bytes=b"\xf8" + b"\x01" * 15), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(ids))

    cluster_id = kafka.new_cluster_id()

    assert cluster_id == "EBAQEBAQEBAQEBAQEBAQEA"
    assert len(cluster_id) == 22


def test_cluster_ids_are_new_each_time() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
