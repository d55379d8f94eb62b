"""The data contract in plain Python: headers, each reject reason and the edge values."""

from __future__ import annotations

from datetime import datetime

import pytest

from tripflow.records import (
    COLUMNS,
    MAX_TEXT_LENGTH,
    HeaderError,
    Reason,
    Trip,
    check_header,
    check_line,
    check_row,
)

POSITIONS = {column: index for index, column in enumerate(COLUMNS)}
GOOD = [
    "Prague",
    "POINT (14.4973794438195 50.00136875782316)",
    "POINT (14.43109483523328 50.04052930943246)",
    "2018-05-28 09:03:40",
    "funny_car",
]


def row(**changes: str) -> list[str]:
    """Return the good row with some fields replaced, by column name."""
    fields = list(GOOD)
    for column, value in changes.items():
        fields[POSITIONS[column]] = value
    return fields


def test_accepts_a_valid_row_as_a_typed_trip() -> None:
    assert check_row(GOOD, POSITIONS) == Trip(
        "Prague",
        14.4973794438195,
        50.00136875782316,
        14.43109483523328,
        50.04052930943246,
        datetime(2018, 5, 28, 9, 3, 40),
        "funny_car",
    )


def test_maps_a_header_in_another_order() -> None:
    header = ["datasource", "datetime", "destination_coord", "origin_coord", "region"]
    positions = check_header(header)
    assert positions == {
        "region": 4,
        "origin_coord": 3,
        "destination_coord": 2,
        "datetime": 1,
        "datasource": 0,
    }
    trip = check_row(list(reversed(GOOD)), positions)
    assert isinstance(trip, Trip)
    assert trip.region == "Prague"


def test_accepts_a_header_with_a_byte_order_mark_and_spaces() -> None:
    assert check_header(["\ufeffregion", " origin_coord", *COLUMNS[2:]]) == POSITIONS


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (
            ["region", "origin", "destination_coord", "datetime", "datasource"],
            "missing origin_coord",
        ),
        (list(COLUMNS[:4]), "missing datasource"),
        ([*COLUMNS, "extra"], "unexpected 'extra'"),
        ([*COLUMNS, "region"], "repeated region"),
        (["Region", *COLUMNS[1:]], "missing region"),
        ([], "missing region"),
    ],
)
def test_rejects_a_wrong_header_with_a_clear_error(header: list[str], problem: str) -> None:
    with pytest.raises(HeaderError, match=problem):
        check_header(header)


def test_rejects_row_with_too_few_fields() -> None:
    assert check_row(GOOD[:4], POSITIONS) is Reason.WRONG_FIELD_COUNT


def test_rejects_row_with_too_many_fields() -> None:
    assert check_row([*GOOD, ""], POSITIONS) is Reason.WRONG_FIELD_COUNT


def test_rejects_row_with_blank_region() -> None:
    assert check_row(row(region="  \t"), POSITIONS) is Reason.EMPTY_REGION


def test_rejects_row_with_unparsable_origin() -> None:
    assert check_row(row(origin_coord="POINT (14.4 abc)"), POSITIONS) is Reason.BAD_ORIGIN_COORD


def test_rejects_row_with_origin_missing_a_number() -> None:
    assert check_row(row(origin_coord="POINT (14.4)"), POSITIONS) is Reason.BAD_ORIGIN_COORD


def test_rejects_row_with_origin_longitude_out_of_range() -> None:
    assert check_row(row(origin_coord="POINT (180.0000001 0)"), POSITIONS) is (
        Reason.ORIGIN_OUT_OF_RANGE
    )


def test_rejects_row_with_latitude_out_of_range() -> None:
    assert check_row(row(origin_coord="POINT (0 -90.5)"), POSITIONS) is Reason.ORIGIN_OUT_OF_RANGE


def test_rejects_row_with_unparsable_destination() -> None:
    assert check_row(row(destination_coord="LINESTRING (1 2, 3 4)"), POSITIONS) is (
        Reason.BAD_DESTINATION_COORD
    )


def test_rejects_row_with_destination_out_of_range() -> None:
    assert check_row(row(destination_coord="POINT (10 91)"), POSITIONS) is (
        Reason.DESTINATION_OUT_OF_RANGE
    )


def test_rejects_row_with_unparsable_datetime() -> None:
    assert check_row(row(datetime="28/05/2018 09:03"), POSITIONS) is Reason.BAD_DATETIME


def test_rejects_row_with_blank_datasource() -> None:
    assert check_row(row(datasource=" "), POSITIONS) is Reason.EMPTY_DATASOURCE


def test_reports_the_first_rule_broken() -> None:
    fields = row(region="", origin_coord="nowhere", datetime="never", datasource="")
    assert check_row(fields, POSITIONS) is Reason.EMPTY_REGION


@pytest.mark.parametrize(
    "point", ["POINT (180 90)", "POINT (-180 -90)", "POINT (180.0 -90.0)", "POINT (0 0)"]
)
def test_accepts_coordinates_on_the_range_boundary(point: str) -> None:
    assert isinstance(check_row(row(origin_coord=point, destination_coord=point), POSITIONS), Trip)


@pytest.mark.parametrize("point", ["POINT (180.0000001 0)", "POINT (-180.0000001 0)"])
def test_rejects_coordinates_just_past_the_range_boundary(point: str) -> None:
    assert check_row(row(destination_coord=point), POSITIONS) is Reason.DESTINATION_OUT_OF_RANGE


def test_accepts_numbers_with_exponents_and_signs() -> None:
    trip = check_row(
        row(origin_coord="POINT (1.45e1 +5E+1)", destination_coord="POINT (-.5 1.)"), POSITIONS
    )
    assert isinstance(trip, Trip)
    assert (trip.origin_lon, trip.origin_lat) == (14.5, 50.0)
    assert (trip.destination_lon, trip.destination_lat) == (-0.5, 1.0)


def test_rejects_a_huge_exponent_as_out_of_range() -> None:
    assert check_row(row(origin_coord="POINT (1e999 0)"), POSITIONS) is Reason.ORIGIN_OUT_OF_RANGE


@pytest.mark.parametrize("point", ["POINT (nan 0)", "POINT (inf 0)", "POINT (1,5 0)", "POINT 1 2"])
def test_rejects_numbers_the_contract_does_not_allow(point: str) -> None:
    assert check_row(row(origin_coord=point), POSITIONS) is Reason.BAD_ORIGIN_COORD


def test_accepts_lowercase_point_and_loose_spacing() -> None:
    trip = check_row(row(origin_coord="  point(14.5   50.0) "), POSITIONS)
    assert isinstance(trip, Trip)
    assert (trip.origin_lon, trip.origin_lat) == (14.5, 50.0)


def test_accepts_an_iso_datetime_with_t() -> None:
    trip = check_row(row(datetime="2018-05-28T09:03:40"), POSITIONS)
    assert isinstance(trip, Trip)
    assert trip.datetime == datetime(2018, 5, 28, 9, 3, 40)


@pytest.mark.parametrize(
    "text",
    [
        "2018-02-30 00:00:00",
        "2018-02-29 00:00:00",
        "2018-13-01 00:00:00",
        "2018-05-28 24:00:00",
        "2018-05-28 23:60:00",
        "2018-05-28 23:59:60",
        "0000-01-01 00:00:00",
        "2018-5-28 09:03:40",
        "2018-05-28 09:03:40Z",
        "2018-05-28 09:03:40.5",
        "2018-05-28",
    ],
)
def test_rejects_a_datetime_that_is_not_a_real_wall_clock_time(text: str) -> None:
    assert check_row(row(datetime=text), POSITIONS) is Reason.BAD_DATETIME


def test_accepts_feb_29_of_a_leap_year() -> None:
    trip = check_row(row(datetime="2016-02-29 23:59:59"), POSITIONS)
    assert isinstance(trip, Trip)
    assert trip.datetime == datetime(2016, 2, 29, 23, 59, 59)


def test_trims_region_datasource_and_datetime() -> None:
    trip = check_row(
        row(region="  Prague ", datasource="\tcar ", datetime=" 2018-05-28 09:03:40 "), POSITIONS
    )
    assert isinstance(trip, Trip)
    assert (trip.region, trip.datasource) == ("Prague", "car")


@pytest.mark.parametrize("column", ["region", "datasource"])
@pytest.mark.parametrize("character", ["\x00", "\x01", "\t", "\n", "\x1b", "\x7f", "\x9b"])
def test_rejects_a_control_character_inside_a_name(column: str, character: str) -> None:
    fields = row(**{column: f"Old{character}Town"})
    assert check_row(fields, POSITIONS) is Reason.CONTROL_CHARACTER


def test_trims_control_whitespace_at_the_ends_of_a_name() -> None:
    # str.strip() removes \t and \x1f at the ends: what is left holds no control character.
    trip = check_row(row(region="\t\x1fPrague\x1f"), POSITIONS)
    assert isinstance(trip, Trip) and trip.region == "Prague"


@pytest.mark.parametrize("column", ["region", "datasource"])
def test_rejects_a_name_longer_than_the_limit(column: str) -> None:
    assert isinstance(check_row(row(**{column: "é" * MAX_TEXT_LENGTH}), POSITIONS), Trip)
    too_long = row(**{column: "é" * (MAX_TEXT_LENGTH + 1)})
    assert check_row(too_long, POSITIONS) is Reason.TEXT_TOO_LONG


def test_reports_a_control_character_before_a_length() -> None:
    fields = row(region="x" * (MAX_TEXT_LENGTH + 1), datasource="a\x00b")
    assert check_row(fields, POSITIONS) is Reason.CONTROL_CHARACTER


def test_reads_a_line_as_utf8_csv() -> None:
    line = '"Prague, centre",' + ",".join(GOOD[1:])
    trip = check_line(line.encode(), POSITIONS)
    assert isinstance(trip, Trip) and trip.region == "Prague, centre"


def test_rejects_a_line_that_is_not_utf8() -> None:
    line = "Pr\xe1gue," + ",".join(GOOD[1:])
    assert check_line(line.encode("latin-1"), POSITIONS) is Reason.INVALID_UTF8


@pytest.mark.parametrize(
    "line",
    [
        # Both halves of a record whose quoted region held a line break.
        '"Old',
        'Town",' + ",".join(GOOD[1:]),
        'Old Town",' + ",".join(GOOD[1:]),
        '"Old ""big"" Town,' + ",".join(GOOD[1:]),
    ],
)
def test_rejects_a_line_with_a_quoted_field_left_open(line: str) -> None:
    assert check_line(line, POSITIONS) is Reason.UNBALANCED_QUOTES


def test_accepts_balanced_quotes_inside_and_around_fields() -> None:
    trip = check_line('"Old ""big"" Town",' + ",".join(GOOD[1:]), POSITIONS)
    assert isinstance(trip, Trip) and trip.region == 'Old "big" Town'
