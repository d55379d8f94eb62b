"""Generated requests against the running API: every answer must match its OpenAPI document.

gunicorn serves the API under the run's stack (the `connect_stack` fixture, its database
holding the sample). schemathesis generates valid and invalid query strings for every
operation of the document (its examples, coverage and fuzzing phases), sends them over HTTP
and runs every check it has on each answer: no 5xx, documented status codes, content types,
headers and bodies, invalid input rejected and valid input accepted, methods the document
does not list refused with 405 and an Allow header.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import schemathesis
from schemathesis.config import SchemathesisConfig

from tests import reference
from tests.conftest import SAMPLE
from tripflow.api.openapi import build_openapi
from tripflow.weeks import MAX_SPAN_WEEKS

# Cases per operation in the fuzzing phase; the examples and coverage phases add their own.
# Operations without parameters run out of distinct cases long before this.
FUZZING_CASES = 500
MIN_CASES = 1000

CONFIG = SchemathesisConfig.from_dict(
    {
        # The same cases on every run, and no example database written into the repository.
        "seed": 20180430,
        "generation": {
            "max-examples": FUZZING_CASES,
            "deterministic": True,
            "database": "none",
            "unique-inputs": True,
        },
        # The coverage phase sends unknown and repeated parameters to every operation. Left
        # to add them to its invalid cases too, the fuzzing phase gets nearly every one of
        # them refused for the unknown name alone, and never learns whether a bad value of a
        # declared parameter is refused.
        "phases": {"fuzzing": {"generation": {"allow-extra-parameters": False}}},
        # Hypothesis's one timing check (data generation slower than it likes) would fail
        # the test on a loaded machine; it says nothing about the API.
        "suppress-health-check": ["too_slow"],
    }
)

# schemathesis builds its tests when pytest collects this module, before any fixture has
# started the API, so it reads the document from the code that serves /openapi.json;
# test_the_running_api_serves_this_document checks the server answers the same document.
# (Its loader that waits for a fixture, schemathesis.pytest.from_fixture, fails on pytest
# 9.2, which removed the Node._nodeid it rewrites.)
DOCUMENT = build_openapi()
# The event stream never ends, so a generated case would wait on its body for ever; its
# parameters and answers are tested in test_events.py.
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG).exclude(path="/ingestions/events")

SAMPLE_TRIPS = [row.trip for row in reference.read_trips(SAMPLE)]


def _weeks(first: datetime, last: datetime) -> int:
    """ISO weeks from the week of `first` to the week of `last`, both included."""
    return (reference.iso_monday(last) - reference.iso_monday(first)).days // 7 + 1


def _range_weeks(start: datetime, end: datetime) -> int:
    """ISO weeks the half-open range [start, end) touches."""
    return _weeks(start, end - timedelta(microseconds=1)) if end > start else 0


def refused_between_parameters(sent: Mapping[str, Sequence[str]]) -> set[str]:
    """Name the parameters /weekly-average must refuse for breaking a rule that ties a value
    to another value or to the stored trips, which JSON Schema cannot state: a box whose
    min exceeds its max, a `to` not after `from`, a span over MAX_SPAN_WEEKS weeks. Each
    value is taken to match its own schema (as a schema-valid case's do)."""
    values = {name: texts[0] for name, texts in sent.items()}
    refused = set()
    if "bbox" in values:
        min_lon, min_lat, max_lon, max_lat = (float(part) for part in values["bbox"].split(","))
        if min_lon > max_lon or min_lat > max_lat:
            refused.add("bbox")
    start = datetime.fromisoformat(values["from"]) if "from" in values else None
    end = datetime.fromisoformat(values["to"]) if "to" in values else None
    if start is not None and end is not None:
        if start >= end or _range_weeks(start, end) > MAX_SPAN_WEEKS:
            refused.add("to")
        return refused
    if refused:
        return refused
    # An open end of the range is the week of the first or last trip of the region and
    # datasource asked about; too long a span names the ends that were sent.
    region, datasource = values.get("region"), values.get("datasource")
    moments = [
        trip.datetime
        for trip in SAMPLE_TRIPS
        if (region is None or trip.region == region.strip())
        and (datasource is None or trip.datasource == datasource.strip())
    ]
    lower = start if start is not None else min(moments, default=None)
    if lower is None:
        return set()
    if end is not None:
        weeks = _range_weeks(lower, end)
    else:
        latest = max(moments, default=None)
        weeks = _weeks(lower, latest) if latest is not None and latest >= lower else 0
    return {name for name in ("from", "to") if name in values} if weeks > MAX_SPAN_WEEKS else set()


def test_the_rules_between_parameters_are_read_as_the_api_states_them() -> None:
    first = min(trip.datetime for trip in SAMPLE_TRIPS)
    assert date(2018, 1, 1) < first.date() < date(2018, 12, 31)
    assert refused_between_parameters({"bbox": ["1,2,1,2"]}) == set()
    assert refused_between_parameters({"bbox": ["1,3,2,2"], "to": ["2018-01-01"]}) == {"bbox"}
    assert refused_between_parameters({"from": ["2018-01-02"], "to": ["2018-01-01"]}) == {"to"}
    # 5,300 weeks from the Monday 2018-01-01 run to the Sunday 2119-07-30 included.
    longest = {"from": ["2018-01-01"], "to": ["2119-07-31"]}
    assert refused_between_parameters(longest) == set()
    assert refused_between_parameters({**longest, "to": ["2119-07-31 00:00:01"]}) == {"to"}
    assert refused_between_parameters({"to": ["3000-01-01"]}) == {"to"}
    assert refused_between_parameters({"to": ["3000-01-01"], "region": ["Atlantis"]}) == set()
    assert refused_between_parameters({"from": ["1000-01-01"], "bbox": ["1,2,3,4"]}) == {"from"}
    assert refused_between_parameters({"from": ["3000-01-01"]}) == set()


@pytest.fixture(scope="module")
def api_url(sample_api: str) -> str:
    """The run's API under gunicorn, its database holding the sample."""
    return sample_api


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def generated(pytestconfig: pytest.Config) -> Iterator[Counter[str]]:
    """Count the cases sent per operation; once every operation ran, demand enough of them."""
    counts: Counter[str] = Counter()
    yield counts
    total = sum(counts.values())
    summary = f"schemathesis sent {total} generated cases: {dict(sorted(counts.items()))}"
    # Shown in every run, not only when the test fails.
    with pytestconfig.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print("\n" + summary)
    operations = {result.ok().label for result in schema.get_all_operations()}
    # A run of some operations only (-k) is not held to the total.
    if set(counts) == operations:
        assert total >= MIN_CASES, summary


def test_the_running_api_serves_this_document(api_url: str, http: requests.Session) -> None:
    response = http.get(f"{api_url}/openapi.json")
    assert response.status_code == 200
    assert response.json() == DOCUMENT


@schema.parametrize()
def test_every_answer_matches_the_openapi_document(
    case: Any, api_url: str, http: requests.Session, generated: Counter[str]
) -> None:
    generated[case.operation.label] += 1
    response = case.call(base_url=api_url, session=http)
    sent = parse_qs(urlsplit(response.request.url).query, keep_blank_values=True)
    refused = set()
    if case.operation.path == "/weekly-average" and case.meta.generation.mode.is_positive:
        refused = refused_between_parameters(sent)
    excluded = []
    if refused:
        # Schema-valid values that break a rule between them: the API must refuse them and
        # name the right parameters, so positive_data_acceptance, which expects them
        # accepted, is the one check left out.
        excluded.append(schemathesis.checks.positive_data_acceptance)
    case.validate_response(
        response,
        excluded_checks=excluded,
        transport_kwargs={"base_url": api_url, "session": http},
    )
    if response.status_code == 400:
        problem = response.json()
        named = {item["name"] for item in problem["invalid_params"]}
        # Every rejected parameter is named, and only parameters the request sent or had to.
        required = {parameter.name for parameter in case.operation.query if parameter.is_required}
        assert named, problem
        assert named <= set(sent) | required, (named, sent)
        if refused:
            assert named == refused, (problem, sent)
    else:
        assert not refused, (response.status_code, sent)
