"""Trips for database tests: generated ones, staged and published without Spark."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from tripflow import generate
from tripflow.records import Trip
from tripflow.warehouse.publish import DiskBudget, publish_batch


def sample(count: int, seed: int) -> list[Trip]:
    drawn = generate.sample_trips(np.random.default_rng(seed), count)
    return [
        Trip(
            region=generate.REGIONS[drawn.region[row]].name,
            origin_lon=float(drawn.origin_lon[row]),
            origin_lat=float(drawn.origin_lat[row]),
            destination_lon=float(drawn.destination_lon[row]),
            destination_lat=float(drawn.destination_lat[row]),
            datetime=datetime.fromtimestamp(int(drawn.seconds[row]), UTC).replace(tzinfo=None),
            datasource=generate.DATASOURCES[drawn.datasource[row]][0],
        )
        for row in range(count)
    ]


def stage(conn: psycopg.Connection[Any], trips: list[Trip]) -> int:
    """Put trips into staging as one staged batch of one file; return the batch id."""
    batch = conn.execute(
        "INSERT INTO ingestion_batch (status, files, rows_staged) VALUES ('staged', 1, %s)"
        " RETURNING batch_id",
        (len(trips),),
    ).fetchone()
    assert batch is not None
    file = conn.execute(
        "INSERT INTO ingestion_file (batch_id, name, landing_path, size_bytes, checksum,"
        " rows_duplicate) VALUES (%s, 'f.csv', %s, 1, 'x', 0) RETURNING file_id",
        (batch[0], f"landing/{batch[0]}.csv"),
    ).fetchone()
    assert file is not None
    with conn.cursor().copy(
        "COPY staging_tripdata (batch_id, file_id, trip_key, region, origin_lon, origin_lat,"
        " destination_lon, destination_lat, datetime, datasource) FROM STDIN"
    ) as copy:
        for trip in trips:
            key = "|".join(str(value) for value in vars(trip).values())
            copy.write_row((batch[0], file[0], key_uuid(key), trip.region, trip.origin_lon,
                            trip.origin_lat, trip.destination_lon, trip.destination_lat,
                            trip.datetime, trip.datasource))  # fmt: skip
    conn.commit()
    return int(batch[0])


def stage_and_publish(
    conn: psycopg.Connection[Any], trips: list[Trip], disk: DiskBudget | None = None
) -> int:
    """Stage trips as one batch and publish it; return the batch id."""
    batch_id = stage(conn, trips)
    assert publish_batch(conn, batch_id, disk=disk)
    conn.commit()
    return batch_id


def key_uuid(text: str) -> str:
    """Return a trip key (an MD5 as a uuid) for a text."""
    digest = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"
