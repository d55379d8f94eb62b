"""The trip generator: reproducible, exact counts, valid rows, planted errors and repeats."""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tripflow.cli import app
from tripflow.generate import (
    DATASOURCES,
    GENERATED_REASONS,
    REGIONS,
    YEAR,
    YEAR_START,
    GenerationSummary,
    Order,
    TimeSpan,
    epoch_seconds,
    file_spans,
    generate_trips,
    sample_seconds,
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
    assert all(found[reason] > 0 for reason in GENERATED_REASONS)
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
        {"days_per_file": 3.0},
        {"start": datetime(2019, 1, 1)},
        {"order": Order.TIME, "days_per_file": 0.0},
        {"order": Order.TIME, "days_per_file": float("nan")},
        {"order": Order.TIME, "days_per_file": 3e6},
    ],
)
def test_rejects_impossible_arguments(tmp_path: Path, arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate_trips(out_dir=tmp_path, **({"rows": 10} | arguments))


def test_command_prints_a_json_summary(tmp_path: Path) -> None:
    arguments = ["generate", "--rows", "2000", "--out", str(tmp_path), "--files", "2"]
    arguments += ["--invalid-rate", "0.1", "--duplicate-rate", "0.1", "--json"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 2000
    assert len(summary["files"]) == 2
    assert set(summary["invalid"]) == {reason.value for reason in GENERATED_REASONS}
    assert summary["invalid_rows"] == sum(summary["invalid"].values())
    assert summary["distinct_trips"] == 2000 - summary["invalid_rows"] - summary["duplicates"]


def file_datetimes(item_path: Path) -> list[datetime]:
    """Return the datetime of every row of one file that passes the contract."""
    positions = {"region": 0, "origin_coord": 1, "destination_coord": 2}
    positions |= {"datetime": 3, "datasource": 4}
    with item_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        results = [check_row(row, positions) for row in reader]
    return [result.datetime for result in results if isinstance(result, Trip)]


def test_time_ordered_files_cover_spans_that_follow_each_other(tmp_path: Path) -> None:
    summary = generate_trips(
        3000, tmp_path, files=4, order=Order.TIME, start=datetime(2019, 3, 1), days_per_file=2.5
    )
    spans = [item.span for item in summary.files]
    assert spans[0].start == datetime(2019, 3, 1)
    assert all(span.days == 2.5 for span in spans)
    assert all(later.start == earlier.end for earlier, later in itertools.pairwise(spans))
    assert summary.span == TimeSpan(datetime(2019, 3, 1), datetime(2019, 3, 11))
    assert summary.order is Order.TIME


def test_time_ordered_files_share_one_year_by_default() -> None:
    spans = file_spans(7)
    assert (spans[0].start, spans[-1].end) == (YEAR.start, YEAR.end)
    assert all(later.start == earlier.end for earlier, later in itertools.pairwise(spans))
    # Whole seconds: each span is 365/7 days to within a second.
    lengths = {(span.end - span.start).total_seconds() for span in spans}
    assert max(abs(length - 365 / 7 * 86400) for length in lengths) <= 1


def test_spans_of_hours_do_not_drift() -> None:
    spans = file_spans(1000, datetime(2019, 1, 1), days_per_file=1 / 24)
    assert spans[-1].end == datetime(2019, 1, 1) + timedelta(hours=1000)
    assert {span.end - span.start for span in spans} == {timedelta(hours=1)}


def test_every_valid_datetime_lies_in_its_files_span(tmp_path: Path) -> None:
    # Across February 29th of a leap year, with planted errors and repeats, several chunks.
    summary = generate_trips(
        12_000,
        tmp_path,
        files=3,
        seed=9,
        invalid_rate=0.1,
        duplicate_rate=0.1,
        chunk_rows=1500,
        order=Order.TIME,
        start=datetime(2020, 2, 28, 6),
        days_per_file=0.75,
    )
    for item in summary.files:
        moments = file_datetimes(item.path)
        assert len(moments) > 0.7 * item.rows
        assert all(item.span.contains(moment) for moment in moments)
        # Spread over the span, not piled at one end.
        middle = item.span.start + (item.span.end - item.span.start) / 2
        assert 0.2 < sum(moment < middle for moment in moments) / len(moments) < 0.8


def test_time_order_counts_rejected_reasons_and_repeats_exactly(tmp_path: Path) -> None:
    summary = generate_trips(
        16_000,
        tmp_path,
        files=2,
        seed=10,
        invalid_rate=0.2,
        duplicate_rate=0.1,
        chunk_rows=3000,
        order=Order.TIME,
        start=datetime(2024, 2, 26),
        days_per_file=4,
    )
    results = checked(summary)
    found = Counter(result for result in results if isinstance(result, Reason))
    assert dict(found) == summary.invalid
    assert all(found[reason] > 0 for reason in GENERATED_REASONS)
    trips = Counter(result for result in results if isinstance(result, Trip))
    assert sum(count - 1 for count in trips.values()) == summary.duplicates > 0
    assert len(trips) == summary.distinct_trips


def test_time_order_with_the_same_arguments_writes_the_same_bytes(tmp_path: Path) -> None:
    arguments: dict[str, Any] = {"files": 3, "seed": 11, "invalid_rate": 0.05}
    arguments |= {"duplicate_rate": 0.05, "chunk_rows": 900, "order": Order.TIME}
    arguments |= {"start": datetime(2019, 1, 1), "days_per_file": 1.0}
    for name in ("a", "b"):
        generate_trips(4000, tmp_path / name, **arguments)
    generate_trips(4000, tmp_path / "c", **(arguments | {"start": datetime(2019, 1, 2)}))
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")
    assert file_bytes(tmp_path / "a") != file_bytes(tmp_path / "c")


def test_spread_order_puts_every_file_over_the_whole_year(tmp_path: Path) -> None:
    summary = generate_trips(2000, tmp_path, files=2, seed=12)
    assert summary.order is Order.SPREAD
    assert [item.span for item in summary.files] == [YEAR, YEAR]
    for item in summary.files:
        moments = file_datetimes(item.path)
        assert min(moments) < datetime(2018, 2, 1) and max(moments) >= datetime(2018, 12, 1)


def test_times_in_a_span_keep_the_weekly_and_daily_rhythm() -> None:
    # Four weeks of 2019 from a Monday; a span that cuts hours at both ends.
    start, end = epoch_seconds(datetime(2019, 1, 7)), epoch_seconds(datetime(2019, 2, 4))
    seconds = sample_seconds(np.random.default_rng(13), 100_000, (start, end))
    assert seconds.min() >= start and seconds.max() < end
    offset = seconds - start
    weekday = (offset // 86400) % 7
    per_day = np.bincount(weekday, minlength=7)
    assert per_day[:5].min() > per_day[5:].max()
    hour = (offset // 3600) % 24
    assert np.sum((weekday < 5) & (hour == 8)) > 3 * np.sum((weekday < 5) & (hour == 3))
    cut = (start + 1800, start + 5400)
    inside = sample_seconds(np.random.default_rng(14), 1000, cut)
    assert inside.min() >= cut[0] and inside.max() < cut[1]


@pytest.mark.parametrize("order", list(Order))
def test_command_writes_each_order_and_reports_the_spans(tmp_path: Path, order: Order) -> None:
    arguments = ["generate", "--rows", "300", "--out", str(tmp_path), "--files", "3"]
    arguments += ["--order", order.value, "--json"]
    if order is Order.TIME:
        arguments += ["--start", "2019-05-01", "--days-per-file", "0.5"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["order"] == order.value
    spans = [item["span"] for item in summary["files"]]
    if order is Order.TIME:
        assert [span["start"] for span in spans] == [
            "2019-05-01 00:00:00",
            "2019-05-01 12:00:00",
            "2019-05-02 00:00:00",
        ]
        assert summary["span"] == {
            "start": "2019-05-01 00:00:00",
            "end": "2019-05-02 12:00:00",
            "days": 1.5,
        }
    else:
        assert {span["start"] for span in spans} == {"2018-01-01 00:00:00"}
        assert {span["end"] for span in spans} == {"2019-01-01 00:00:00"}


def test_command_refuses_a_start_without_the_time_order(tmp_path: Path) -> None:
    arguments = ["generate", "--rows", "10", "--out", str(tmp_path), "--start", "2019-01-01"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code != 0
