"""Bucket events: which S3 notifications start the DAG."""

from __future__ import annotations

import json

import pytest

from tripflow.orchestration.events import created_keys, landed_files, landing_prefix

LAKE = "s3://tripflow/lake"
PREFIX = "lake/data/raw/tripdata/"


def record(name: str, key: str, bucket: str = "tripflow") -> dict[str, object]:
    return {"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}


def test_the_landing_prefix_follows_the_lake_url() -> None:
    assert landing_prefix(LAKE) == ("tripflow", PREFIX)
    assert landing_prefix("s3://bucket") == ("bucket", "data/raw/tripdata/")
    assert landing_prefix("s3://bucket/a/b/") == ("bucket", "a/b/data/raw/tripdata/")


@pytest.mark.parametrize(
    "name",
    [
        "ObjectCreated:Put",
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:CompleteMultipartUpload",
        "ObjectCreated:Copy",
    ],
)
def test_a_file_created_in_the_landing_dir_is_taken_under_aws_and_prefixed_names(name: str) -> None:
    document = {"Records": [record(name, PREFIX + "trips.csv")]}
    assert created_keys(document, "tripflow", PREFIX) == [PREFIX + "trips.csv"]


@pytest.mark.parametrize(
    "event",
    [
        record("s3:ObjectRemoved:Delete", PREFIX + "trips.csv"),
        record("s3:ObjectCreated:Put", "lake/data/processed/tripdata/1/trips.csv"),
        record("s3:ObjectCreated:Put", PREFIX + "sub/trips.csv"),
        record("s3:ObjectCreated:Put", PREFIX + "trips.csv._COPYING_"),
        record("s3:ObjectCreated:Put", PREFIX + ".hidden.csv"),
        record("s3:ObjectCreated:Put", PREFIX + "trips.csv", bucket="other"),
        record("s3:ObjectCreated:Put", "other/data/raw/tripdata/trips.csv"),
        {"eventName": "s3:ObjectCreated:Put"},
        "not a record",
    ],
)
def test_other_events_are_passed_over(event: object) -> None:
    assert created_keys({"Records": [event]}, "tripflow", PREFIX) == []


def test_keys_are_taken_as_sent_or_url_decoded() -> None:
    # AWS encodes the key; versitygw sends it as it is.
    encoded = {"Records": [record("ObjectCreated:Put", "lake%2Fdata%2Fraw%2Ftripdata%2Fa+b.csv")]}
    assert created_keys(encoded, "tripflow", PREFIX) == [PREFIX + "a b.csv"]
    plain = {"Records": [record("s3:ObjectCreated:Put", PREFIX + "june trips+1.csv")]}
    assert created_keys(plain, "tripflow", PREFIX) == [PREFIX + "june trips+1.csv"]


class Message:
    def __init__(self, value: bytes | None) -> None:
        self._value = value

    def value(self) -> bytes | None:
        return self._value


def test_a_message_becomes_an_event_payload_or_nothing() -> None:
    landed = json.dumps({"Records": [record("s3:ObjectCreated:Put", PREFIX + "a.csv")]})
    assert json.loads(landed_files(Message(landed.encode()), LAKE) or "") == {
        "bucket": "tripflow",
        "keys": [PREFIX + "a.csv"],
    }
    for value in (b"", b"{not json", b"[]", b'{"Records": 5}', None, b"\xff\xfe"):
        assert landed_files(Message(value), LAKE) is None
