"""The trip generator: reproducible, exact counts, valid rows, planted errors and repeats."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tripflow.cli import app
from tripflow.generate import (
    DATASOURCES,
    REGIONS,
    YEAR_START,
    GenerationSummary,
    generate_trips,
    sample_trips,
    split_rows,
)
from tripflow.records import Reason, Trip, check_header, check_row

BOXES = {item.name: item for item in REGIONS}


def read_rows(summary: GenerationSummary) -> list[list[str]]:
    """Return every data row of the generated files, in order, checking each header."""
    rows: list[list[str]] = []
    for item in summary.files:
        with item.path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            check_header(next(reader))
            rows.extend(reader)
    return rows


def checked(summary: GenerationSummary) -> list[Trip | Reason]:
    """Apply the contract to every generated row."""
    positions = {"region": 0, "origin_coord": 1, "destination_coord": 2}
    positions |= {"datetime": 3, "datasource": 4}
    return [check_row(row, positions) for row in read_rows(summary)]


def file_bytes(directory: Path) -> dict[str, bytes]:
    """Return the content of every file in a directory, by name."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_trips(
            3000,
            tmp_path / name,
            files=2,
            seed=42,
            invalid_rate=0.1,
            duplicate_rate=0.1,
            chunk_rows=700,
        )
    first, second = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert list(first) == ["trips-00001.csv", "trips-00002.csv"]
    assert first == second


def test_different_seeds_write_different_files(tmp_path: Path) -> None:
    generate_trips(1000, tmp_path / "a", seed=1)
    generate_trips(1000, tmp_path / "b", seed=2)
    assert file_bytes(tmp_path / "a") != file_bytes(tmp_path / "b")


def test_writes_the_exact_rows_and_files_asked_for(tmp_path: Path) -> None:
    summary = generate_trips(1001, tmp_path, files=3, chunk_rows=200)
    assert [path.name for path in sorted(tmp_path.iterdir())] == [
        "trips-00001.csv",
        "trips-00002.csv",
        "trips-00003.csv",
    ]
    assert [item.rows for item in summary.files] == [334, 334, 333]
    assert len(read_rows(summary)) == summary.rows == 1001
    assert [item.bytes for item in summary.files] == [
        item.path.stat().st_size for item in summary.files
    ]
    assert summary.bytes == sum(item.bytes for item in summary.files)


def test_splits_rows_evenly_with_the_remainder_first() -> None:
    assert split_rows(10, 3) == [4, 3, 3]
    assert split_rows(2, 4) == [1, 1, 0, 0]


def test_every_row_passes_the_contract_without_invalid_rate(tmp_path: Path) -> None:
    summary = generate_trips(5000, tmp_path, files=2, seed=3, chunk_rows=1500)
    results = checked(summary)
    assert all(isinstance(result, Trip) for result in results)
    assert summary.invalid_rows == 0
    assert summary.duplicates == 0
    assert summary.distinct_trips == 5000


def test_points_lie_inside_their_region_box_and_times_in_2018(tmp_path: Path) -> None:
    trips = [r for r in checked(generate_trips(5000, tmp_path, seed=4)) if isinstance(r, Trip)]
    assert {trip.region for trip in trips} == set(BOXES)
    assert {trip.datasource for trip in trips} == {name for name, _ in DATASOURCES}
    for trip in trips:
        box = BOXES[trip.region]
        for lon, lat in (
            (trip.origin_lon, trip.origin_lat),
            (trip.destination_lon, trip.destination_lat),
        ):
            assert box.min_lon <= lon <= box.max_lon
            assert box.min_lat <= lat <= box.max_lat
        assert datetime(2018, 1, 1) <= trip.datetime < datetime(2019, 1, 1)


def test_weekdays_and_rush_hours_are_busier() -> None:
    trips = sample_trips(np.random.default_rng(5), 200_000)
    offset = trips.seconds - YEAR_START
    assert offset.min() >= 0
    assert offset.max() < 365 * 86400
    weekday = (offset // 86400) % 7  # 2018-01-01 is a Monday
    per_day = np.bincount(weekday, minlength=7)
    assert per_day[:5].min() > per_day[5:].max()
    hour = (offset // 3600) % 24
    working = weekday < 5
    assert np.sum(working & (hour == 8)) > 3 * np.sum(working & (hour == 3))


def test_most_trips_are_short() -> None:
    trips = sample_trips(np.random.default_rng(6), 20_000)
    lat_km = (trips.destination_lat - trips.origin_lat) * 111.32
    lon_km = (trips.destination_lon - trips.origin_lon) * 111.32 * 0.65
    assert np.median(np.hypot(lat_km, lon_km)) < 5


def test_rejected_reasons_match_the_summary_exactly(tmp_path: Path) -> None:
    summary = generate_trips(
        16_000,
        tmp_path,
        files=2,
        seed=7,
        invalid_rate=0.2,
        duplicate_rate=0.1,
        chunk_rows=3000,
    )
    found = Counter(result for result in checked(summary) if isinstance(result, Reason))
    assert dict(found) == summary.invalid
    assert all(found[reason] > 0 for reason in Reason)
    assert 0.17 < summary.invalid_rows / summary.rows < 0.23


def test_duplicates_are_counted_exactly(tmp_path: Path) -> None:
    summary = generate_trips(
        12_000,
        tmp_path,
        files=3,
        seed=8,
        invalid_rate=0.05,
        duplicate_rate=0.15,
        chunk_rows=2500,
    )
    trips = Counter(result for result in checked(summary) if isinstance(result, Trip))
    repeats = sum(count - 1 for count in trips.values())
    assert repeats == summary.duplicates > 0
    assert len(trips) == summary.distinct_trips
    # Some repeats cross a file boundary: a row of file 2 or 3 first seen in file 1.
    first_file = {tuple(row) for row in read_rows(summary)[: summary.files[0].rows]}
    later = read_rows(summary)[summary.files[0].rows :]
    assert any(tuple(row) in first_file for row in later)


def test_all_duplicates_keep_one_original(tmp_path: Path) -> None:
    summary = generate_trips(50, tmp_path, duplicate_rate=1.0)
    assert summary.duplicates == 49
    assert len(set(map(tuple, read_rows(summary)))) == 1


@pytest.mark.parametrize(
    "arguments",
    [
        {"rows": -1},
        {"files": 0},
        {"invalid_rate": 1.5},
        {"invalid_rate": 0.6, "duplicate_rate": 0.6},
    ],
)
def test_rejects_impossible_arguments(tmp_path: Path, arguments: dict[str, float]) -> None:
    values: dict[str, float] = {"rows": 10} | arguments
    with pytest.raises(ValueError):
        generate_trips(
            int(values["rows"]),
            tmp_path,
            files=int(values.get("files", 1)),
            invalid_rate=values.get("invalid_rate", 0.0),
            duplicate_rate=values.get("duplicate_rate", 0.0),
        )


def test_command_prints_a_json_summary(tmp_path: Path) -> None:
    arguments = ["generate", "--rows", "2000", "--out", str(tmp_path), "--files", "2"]
    arguments += ["--invalid-rate", "0.1", "--duplicate-rate", "0.1", "--json"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 2000
    assert len(summary["files"]) == 2
    assert set(summary["invalid"]) == {reason.value for reason in Reason}
    assert summary["invalid_rows"] == sum(summary["invalid"].values())
    assert summary["distinct_trips"] == 2000 - summary["invalid_rows"] - summary["duplicates"]
