"""ISO weeks, spans and the weekly-average answer, without a database."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from tripflow.weeks import (
    MAX_SPAN_WEEKS,
    AreaQuery,
    BBox,
    Match,
    SpanTooLongError,
    WeeklyAverage,
    query_span,
    range_span,
    week_label,
    week_span,
    week_start,
)


def test_week_start_of_a_sunday_is_the_monday_before() -> None:
    assert week_start(datetime(2018, 5, 27, 23, 59, 59)) == date(2018, 5, 21)


def test_week_start_of_a_monday_is_that_monday() -> None:
    assert week_start(datetime(2018, 5, 21, 0, 0, 0)) == date(2018, 5, 21)
    assert week_start(date(2018, 5, 21)) == date(2018, 5, 21)


def test_week_label_carries_the_iso_year_across_the_year_boundary() -> None:
    assert week_label(date(2018, 12, 31)) == "2019-W01"
    assert week_label(date(2018, 12, 24)) == "2018-W52"
    assert week_label(date(2021, 1, 4)) == "2021-W01"
    # 2020-12-28 starts ISO week 53 of 2020, although 2021-01-03 belongs to it.
    assert week_label(week_start(datetime(2021, 1, 3, 12))) == "2020-W53"


def test_week_span_across_the_year_boundary_counts_each_week_once() -> None:
    span = week_span(datetime(2018, 12, 20, 8), datetime(2019, 1, 8, 8))
    assert span == [date(2018, 12, 17), date(2018, 12, 24), date(2018, 12, 31), date(2019, 1, 7)]
    assert [week_label(monday) for monday in span] == [
        "2018-W51",
        "2018-W52",
        "2019-W01",
        "2019-W02",
    ]


def test_week_span_of_one_moment_is_one_week() -> None:
    moment = datetime(2018, 5, 23, 10)
    assert week_span(moment, moment) == [date(2018, 5, 21)]


def test_week_span_is_empty_when_last_is_in_an_earlier_week() -> None:
    assert week_span(datetime(2018, 5, 21), datetime(2018, 5, 20, 23, 59, 59)) == []


def test_range_ending_on_monday_midnight_excludes_that_week() -> None:
    span = range_span(datetime(2018, 5, 14), datetime(2018, 5, 21, 0, 0, 0))
    assert span == [date(2018, 5, 14)]


def test_range_ending_one_second_after_monday_midnight_includes_that_week() -> None:
    span = range_span(datetime(2018, 5, 14), datetime(2018, 5, 21, 0, 0, 1))
    assert span == [date(2018, 5, 14), date(2018, 5, 21)]


def test_range_starting_on_sunday_includes_the_week_of_the_start() -> None:
    span = range_span(datetime(2018, 5, 20, 23), datetime(2018, 5, 21, 1))
    assert span == [date(2018, 5, 14), date(2018, 5, 21)]


def test_empty_or_reversed_range_has_zero_weeks() -> None:
    moment = datetime(2018, 5, 21)
    assert range_span(moment, moment) == []
    assert range_span(moment, datetime(2018, 5, 1)) == []


def test_span_of_exactly_the_cap_is_accepted() -> None:
    first = date(2000, 1, 3)
    last = date.fromordinal(first.toordinal() + 7 * (MAX_SPAN_WEEKS - 1))
    assert len(week_span(first, last)) == MAX_SPAN_WEEKS


def test_span_longer_than_the_cap_is_refused() -> None:
    first = date(2000, 1, 3)
    last = date.fromordinal(first.toordinal() + 7 * MAX_SPAN_WEEKS)
    with pytest.raises(SpanTooLongError, match=str(MAX_SPAN_WEEKS + 1)):
        week_span(first, last)
    with pytest.raises(ValueError, match="limit"):
        range_span(datetime(1, 1, 1), datetime(9999, 12, 31))


def test_query_span_without_range_runs_from_earliest_to_latest_trip() -> None:
    span = query_span(None, None, datetime(2018, 5, 1, 5), datetime(2018, 5, 31, 11))
    assert span[0] == date(2018, 4, 30)
    assert span[-1] == date(2018, 5, 28)
    assert len(span) == 5


def test_query_span_with_only_from_ends_at_latest_trip() -> None:
    span = query_span(datetime(2018, 5, 15), None, datetime(2018, 5, 1), datetime(2018, 5, 31))
    assert span == [date(2018, 5, 14), date(2018, 5, 21), date(2018, 5, 28)]


def test_query_span_with_only_to_starts_at_earliest_trip() -> None:
    span = query_span(None, datetime(2018, 5, 14), datetime(2018, 5, 1), datetime(2018, 5, 31))
    assert span == [date(2018, 4, 30), date(2018, 5, 7)]


def test_query_span_with_a_full_range_ignores_the_trips() -> None:
    span = query_span(datetime(2019, 1, 1), datetime(2019, 1, 15), None, None)
    assert span == [date(2018, 12, 31), date(2019, 1, 7), date(2019, 1, 14)]


def test_query_span_without_trips_and_an_open_range_has_zero_weeks() -> None:
    assert query_span(None, None, None, None) == []
    assert query_span(datetime(2018, 5, 1), None, None, None) == []
    assert query_span(None, datetime(2018, 5, 1), None, None) == []


def test_query_span_is_empty_when_from_is_after_the_latest_trip() -> None:
    assert query_span(datetime(2018, 6, 1), None, datetime(2018, 5, 1), datetime(2018, 5, 31)) == []


def test_zero_weeks_answer_has_zero_average_and_null_weeks() -> None:
    answer = WeeklyAverage(query=AreaQuery(), span=[], counts={})
    body = answer.to_json()
    assert body["trips"] == 0
    assert body["weeks"] == 0
    assert body["weekly_average"] == 0.0
    assert body["first_week"] is None
    assert body["last_week"] is None
    assert body["series"] == []


def test_answer_counts_empty_weeks_in_the_denominator_and_the_series() -> None:
    query = AreaQuery(
        bbox=BBox(14.3, 49.9, 14.7, 50.2),
        region="Prague",
        datasource="cheap_mobile",
        start=datetime(2018, 12, 24),
        end=datetime(2019, 1, 14),
        match=Match.EITHER,
    )
    span = range_span(datetime(2018, 12, 24), datetime(2019, 1, 14))
    answer = WeeklyAverage(query=query, span=span, counts={date(2018, 12, 31): 3})
    assert answer.to_json() == {
        "trips": 3,
        "weeks": 3,
        "weekly_average": 1.0,
        "first_week": "2018-12-24",
        "last_week": "2019-01-07",
        "series": [
            {"week": "2018-W52", "week_start": "2018-12-24", "trips": 0},
            {"week": "2019-W01", "week_start": "2018-12-31", "trips": 3},
            {"week": "2019-W02", "week_start": "2019-01-07", "trips": 0},
        ],
        "query": {
            "bbox": [14.3, 49.9, 14.7, 50.2],
            "region": "Prague",
            "datasource": "cheap_mobile",
            "from": "2018-12-24T00:00:00",
            "to": "2019-01-14T00:00:00",
            "match": "either",
        },
    }
