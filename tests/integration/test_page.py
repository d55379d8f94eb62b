"""The web page at `/` in a real browser: Debian's chromium, headless, driven by Playwright
for Python (no browser download: the system's chromium by `executable_path`), against the
run's API under gunicorn with the sample loaded. Every check waits on a condition of the
page, never on a fixed delay."""

from __future__ import annotations

import http.client
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

from tests.integration.test_events import advance, new_batch
from tripflow.api.openapi import ENDPOINTS
from tripflow.config import Settings
from tripflow.warehouse.ingestions import Status

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Milliseconds any one condition may take to hold (a loaded machine; they take far less).
WAIT_MS = 20_000
# A browser's Accept header (Chromium's, for a page).
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8"
)
# Set to a file name to keep a picture of the page once a drawn box is answered (the
# README's docs/page.png comes from here).
SCREENSHOT = os.environ.get("TRIPFLOW_PAGE_SCREENSHOT")


@dataclass
class Watched:
    """A page, with what went wrong in it so far: console errors, uncaught exceptions,
    requests that failed and answers of 400 or more."""

    page: Page
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def on_request_failed(self, request: Request) -> None:
        self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: make setup installs it (apt: chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def api(sample_api: str) -> Iterator[requests.Session]:
    """Plain HTTP to the same API, for the answers the page must show."""
    with requests.Session() as session:
        yield session


def get_json(session: requests.Session, url: str, status: int = 200) -> Any:
    response = session.get(url, headers={"Accept": "application/json"}, timeout=30)
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def watched(browser: Browser, sample_api: str) -> Iterator[Watched]:
    """The page opened in a fresh browser context, its first answer shown."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    watched = Watched(page)
    page.on("console", watched.on_console)
    page.on("pageerror", lambda error: watched.errors.append(f"uncaught: {error}"))
    page.on("requestfailed", watched.on_request_failed)
    page.on("response", watched.on_response)
    page.goto(f"{sample_api}/")
    page.wait_for_selector('#answer[data-state="answered"]')
    # The regions drawn, and the map fitted to them.
    page.wait_for_selector("#map path.region")
    yield watched
    context.close()


def wait_for_answer(page: Page, query: str) -> None:
    """Wait until the page shows its answer to exactly this query string."""
    page.wait_for_function(
        "(query) => { const s = document.getElementById('answer');"
        " return s.dataset.query === query && s.dataset.state !== 'asking'; }",
        arg=query,
    )


def shown_answer(page: Page) -> dict[str, Any]:
    """What the page shows of its answer: the numbers as text, the chart's data, the table."""
    shown: dict[str, Any] = page.evaluate(
        """() => ({
            state: document.getElementById('answer').dataset.state,
            trips: document.getElementById('trips').textContent,
            weeks: document.getElementById('weeks').textContent,
            average: document.getElementById('weekly-average').textContent,
            average_value: document.getElementById('weekly-average').dataset.value,
            span: document.getElementById('span').textContent,
            chart: window.tripflow.chart ? window.tripflow.chart.data : null,
            rows: [...document.querySelectorAll('#series tbody tr')].map(
                (row) => [...row.cells].map((cell) => cell.textContent)),
            error: document.getElementById('error').hidden
                ? null : document.getElementById('error').textContent,
        })"""
    )
    return shown


def monday_seconds(day: str) -> float:
    return datetime.combine(date.fromisoformat(day), time(), UTC).timestamp()


def assert_shows(page: Page, answer: dict[str, Any]) -> None:
    """The numbers, the chart and the table on the page are the API's answer."""
    shown = shown_answer(page)
    assert shown["state"] == "answered"
    assert shown["error"] is None
    assert shown["trips"] == f"{answer['trips']:,}"
    assert shown["weeks"] == f"{answer['weeks']:,}"
    assert float(shown["average_value"]) == answer["weekly_average"]
    assert float(shown["average"].replace(",", "")) == pytest.approx(
        answer["weekly_average"], abs=0.0005
    )
    assert shown["span"] == f"{answer['first_week']} to {answer['last_week']}"
    weeks, trips, average = shown["chart"]
    assert weeks == [monday_seconds(week["week_start"]) for week in answer["series"]]
    assert trips == [week["trips"] for week in answer["series"]]
    # The average drawn as a line across every week.
    assert average == [answer["weekly_average"]] * len(answer["series"])
    assert shown["rows"] == [
        [week["week"], week["week_start"], f"{week['trips']:,}"] for week in answer["series"]
    ]


def assert_clean(watched: Watched) -> None:
    assert watched.errors == []
    assert watched.failed == []


def test_json_clients_keep_the_endpoint_index(sample_api: str, api: requests.Session) -> None:
    index = {
        "name": "tripflow",
        "openapi": f"{sample_api}/openapi.json",
        "endpoints": [
            {"path": item.path, "description": item.summary, "example": sample_api + item.example}
            for item in ENDPOINTS
        ],
    }
    # curl and wget send */*; a client may send nothing, or ask for JSON by name.
    for accept in (
        "*/*",
        "application/json",
        "application/json, text/html",
        "text/html;q=0.5, */*",
    ):
        response = api.get(f"{sample_api}/", headers={"Accept": accept}, timeout=30)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == index
        assert "Accept" in response.headers["Vary"]


def test_a_request_without_accept_header_gets_json(sample_api: str) -> None:
    # requests always sends an Accept header; a bare HTTP client sends none.
    address = urlsplit(sample_api)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    try:
        connection.putrequest("GET", "/", skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/json"
        assert b'"endpoints"' in response.read()
    finally:
        connection.close()


def test_browsers_get_the_page_and_its_files_are_cached(
    sample_api: str, api: requests.Session
) -> None:
    page = api.get(f"{sample_api}/", headers={"Accept": BROWSER_ACCEPT}, timeout=30)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "no-cache" in page.headers["Cache-Control"]
    assert "Accept" in page.headers["Vary"]
    again = api.get(
        f"{sample_api}/",
        headers={"Accept": BROWSER_ACCEPT, "If-None-Match": page.headers["ETag"]},
        timeout=30,
    )
    assert again.status_code == 304
    linked = [
        part.split('"', 1)[0]
        for part in page.text.split('src="')[1:] + page.text.split('href="')[1:]
        if part.startswith("/static/")
    ]
    assert len(linked) == 6, linked
    for url in linked:
        asset = api.get(sample_api + url, timeout=30)
        assert asset.status_code == 200, url
        # Every linked URL names its version (vendor/NAME-VERSION/) or its content (?v=).
        assert "max-age=31536000" in asset.headers["Cache-Control"], url
        assert "immutable" in asset.headers["Cache-Control"], url
        assert "no-cache" not in asset.headers["Cache-Control"], url
        assert "Expires" not in asset.headers, url
    unversioned = api.get(f"{sample_api}/static/page.js", timeout=30)
    assert unversioned.status_code == 200
    assert "no-cache" in unversioned.headers["Cache-Control"]
    missing = api.get(f"{sample_api}/static/nothing.js", timeout=30)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"


def test_the_page_loads_cleanly_and_maps_every_region(
    watched: Watched, api: requests.Session, sample_api: str
) -> None:
    page = watched.page
    extents = get_json(api, f"{sample_api}/regions/extents")["regions"]
    datasources = get_json(api, f"{sample_api}/datasources")["datasources"]
    assert [region["name"] for region in extents] == ["Hamburg", "Prague", "Turin"]

    # A box for each region's extent and a dot sized by its trips; no two names collide
    # in the sample's view, so each region is named on the map.
    page.wait_for_function(
        "(count) => document.querySelectorAll('#map path.region').length === count"
        " && document.querySelectorAll('#map path.region-dot').length === count",
        arg=len(extents),
    )
    labels = [f"{region['name']} · {region['trips']} trips" for region in extents]
    page.wait_for_function(
        "(labels) => JSON.stringify([...document.querySelectorAll('.region-label')]"
        ".map((label) => label.textContent).sort()) === JSON.stringify(labels)",
        arg=labels,
    )
    # Each shape spans its region's extent on the map (to the pixel).
    for region, shape in zip(extents, page.locator("#map path.region").all(), strict=True):
        drawn = shape.bounding_box()
        assert drawn is not None
        corners = page.evaluate(
            "(b) => [window.tripflow.map.latLngToContainerPoint([b[1], b[0]]),"
            " window.tripflow.map.latLngToContainerPoint([b[3], b[2]])]",
            region["bbox"],
        )
        assert drawn["width"] == pytest.approx(corners[1]["x"] - corners[0]["x"], abs=4)
        assert drawn["height"] == pytest.approx(corners[0]["y"] - corners[1]["y"], abs=4)
    regions = page.locator("#region option").evaluate_all("(o) => o.map((x) => x.value)")
    assert regions == ["", *[region["name"] for region in extents]]
    sources = page.locator("#datasource option").evaluate_all("(o) => o.map((x) => x.value)")
    assert sources == ["", *[source["name"] for source in datasources]]
    # The first answer is the whole table's.
    wait_for_answer(page, "")
    assert_shows(page, get_json(api, f"{sample_api}/weekly-average"))
    page.wait_for_selector('#batches li[data-batch="1"][data-status="done"]')
    assert_clean(watched)


def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Press the mouse at one (lon, lat) of the map and release it at another."""
    frame = page.locator("#map").bounding_box()
    assert frame is not None
    points = []
    for lon, lat in (start, end):
        point = page.evaluate(
            "([lat, lon]) => window.tripflow.map.latLngToContainerPoint([lat, lon])", [lat, lon]
        )
        points.append((frame["x"] + point["x"], frame["y"] + point["y"]))
    page.mouse.move(*points[0])
    page.mouse.down()
    page.mouse.move(*points[1], steps=8)
    page.mouse.up()


def test_a_box_drawn_with_the_mouse_shows_the_apis_answer_for_it(
    watched: Watched, api: requests.Session, sample_api: str
) -> None:
    page = watched.page
    page.evaluate(
        "() => window.tripflow.map.fitBounds([[49.9, 14.2], [50.2, 14.7]], {animate: false})"
    )
    page.click("#draw")
    assert page.get_attribute("#draw", "aria-pressed") == "true"
    drag(page, (14.35, 50.12), (14.6, 49.98))

    page.wait_for_function("() => document.getElementById('bbox').value !== ''")
    bbox = page.input_value("#bbox")
    min_lon, min_lat, max_lon, max_lat = (float(part) for part in bbox.split(","))
    # Where the mouse went, to a few pixels at this zoom.
    assert min_lon == pytest.approx(14.35, abs=0.005)
    assert max_lon == pytest.approx(14.6, abs=0.005)
    assert min_lat == pytest.approx(49.98, abs=0.005)
    assert max_lat == pytest.approx(50.12, abs=0.005)
    assert page.get_attribute("#draw", "aria-pressed") == "false"
    assert page.locator("#map path.question-box").count() == 1

    wait_for_answer(page, f"bbox={bbox}")
    answer = get_json(api, f"{sample_api}/weekly-average?bbox={bbox}")
    assert answer["trips"] > 0
    assert_shows(page, answer)
    assert page.evaluate("() => location.hash") == f"#bbox={bbox}"

    # The same box with a datasource and match chosen: the question has all three.
    page.select_option("#datasource", "cheap_mobile")
    page.select_option("#match", "either")
    query = f"bbox={bbox}&datasource=cheap_mobile&match=either"
    wait_for_answer(page, query)
    assert_shows(page, get_json(api, f"{sample_api}/weekly-average?{query}"))
    if SCREENSHOT:
        page.select_option("#match", "both")
        page.select_option("#datasource", "")
        wait_for_answer(page, f"bbox={bbox}")
        page.screenshot(path=SCREENSHOT, full_page=True)
    assert_clean(watched)


def test_choosing_a_region_shows_the_apis_answer_for_it(
    watched: Watched, api: requests.Session, sample_api: str
) -> None:
    page = watched.page
    # Clicking a region's shape on the map (all regions in view) asks about that region.
    hamburg = page.locator("#map path.region").nth(0)
    frame = hamburg.bounding_box()
    assert frame is not None
    page.mouse.click(frame["x"] + frame["width"] * 0.25, frame["y"] + frame["height"] * 0.25)
    wait_for_answer(page, "region=Hamburg")
    assert page.input_value("#region") == "Hamburg"
    assert_shows(page, get_json(api, f"{sample_api}/weekly-average?region=Hamburg"))

    # Chosen from the list.
    page.select_option("#region", "Turin")
    wait_for_answer(page, "region=Turin")
    assert_shows(page, get_json(api, f"{sample_api}/weekly-average?region=Turin"))

    # A range too: the span is every week it touches, empty ones included.
    page.fill("#from", "2018-05-01")
    page.fill("#to", "2018-07-01")
    page.locator("#to").dispatch_event("change")
    query = "region=Turin&from=2018-05-01&to=2018-07-01"
    wait_for_answer(page, query)
    answer = get_json(api, f"{sample_api}/weekly-average?{query}")
    assert answer["series"][-1]["trips"] == 0
    assert_shows(page, answer)
    assert_clean(watched)


def test_a_refused_question_shows_the_apis_problem(
    watched: Watched, api: requests.Session, sample_api: str
) -> None:
    page = watched.page
    # min_lon above max_lon: the API names the box and says why.
    page.fill("#bbox", "14.6,49.9,14.3,50.2")
    page.press("#bbox", "Enter")
    wait_for_answer(page, "bbox=14.6,49.9,14.3,50.2")
    problem = get_json(api, f"{sample_api}/weekly-average?bbox=14.6,49.9,14.3,50.2", status=400)
    error = shown_answer(page)["error"]
    assert shown_answer(page)["state"] == "error"
    assert error is not None
    assert f"400 {problem['title']}: {problem['detail']}" in error
    for item in problem["invalid_params"]:
        assert f"{item['name']}: {item['reason']}" in error
    # The browser reports the refused request itself; nothing else went wrong.
    refused = f"{sample_api}/weekly-average?bbox=14.6,49.9,14.3,50.2"
    assert watched.failed == [f"400 {refused}"]
    assert [text for text in watched.errors if "status of 400" not in text] == []

    # The next good question clears the error.
    page.fill("#bbox", "")
    page.press("#bbox", "Enter")
    wait_for_answer(page, "")
    assert shown_answer(page)["error"] is None


def wait_for_groups(page: Page, query: str) -> None:
    """Wait until the page shows its answer of /trip-groups to exactly this query string."""
    page.wait_for_function(
        "(query) => { const s = document.getElementById('groups');"
        " return s.dataset.query === query && s.dataset.state !== 'asking'; }",
        arg=query,
    )


def group_defaults(api: requests.Session, sample_api: str) -> str:
    """The query string of the first page of groups with every default the API describes."""
    described = get_json(api, f"{sample_api}/openapi.json")["paths"]["/trip-groups"]["get"]
    schemas = {item["name"]: item["schema"] for item in described["parameters"]}
    return "&".join(
        f"{name}={schemas[name]['default']}"
        for name in ("resolution", "bucket", "min_trips", "limit", "offset")
    )


def assert_shows_groups(page: Page, answer: dict[str, Any]) -> None:
    """The groups table and the lines on the map are the API's page of groups, in order."""
    shown = page.evaluate(
        """() => ({
            state: document.getElementById('groups').dataset.state,
            rows: [...document.querySelectorAll('#group-table tbody tr')].map(
                (row) => [...row.cells].map((cell) => cell.textContent)),
            lines: document.querySelectorAll('#map path.group-line').length,
            ends: document.querySelectorAll('#map path.group-end').length,
            error: document.getElementById('groups-error').hidden
                ? null : document.getElementById('groups-error').textContent,
        })"""
    )
    assert shown["state"] == "answered"
    assert shown["error"] is None
    rows = shown["rows"]
    assert [row[:5] for row in rows] == [
        [
            group["region"],
            group["origin"]["cell"],
            group["destination"]["cell"],
            f"{group['time_of_day']['from']}\N{EN DASH}{group['time_of_day']['to']}",
            f"{group['trips']:,}",
        ]
        for group in answer["groups"]
    ]
    for row, group in zip(rows, answer["groups"], strict=True):
        assert float(row[5].replace(",", "")) == pytest.approx(group["weekly_average"], abs=0.0005)
    # One line per group, a circle at each end.
    assert shown["lines"] == len(rows)
    assert shown["ends"] == 2 * len(rows)


def test_the_largest_groups_of_similar_trips_are_the_apis(
    watched: Watched, api: requests.Session, sample_api: str
) -> None:
    page = watched.page
    defaults = group_defaults(api, sample_api)
    wait_for_groups(page, defaults)
    first = get_json(api, f"{sample_api}/trip-groups?{defaults}")
    # The defaults the page read from the API's description are the API's own.
    assert first == get_json(api, f"{sample_api}/trip-groups")
    assert 0 < len(first["groups"]) < first["total_groups"]
    assert_shows_groups(page, first)

    # The next page, then back to the first.
    page.click("#groups-next")
    second = defaults.replace("offset=0", f"offset={first['limit']}")
    wait_for_groups(page, second)
    assert_shows_groups(page, get_json(api, f"{sample_api}/trip-groups?{second}"))
    page.click("#groups-previous")
    wait_for_groups(page, defaults)
    assert_shows_groups(page, first)

    # A region chosen for the weekly average chooses the groups' region too.
    page.select_option("#region", "Prague")
    query = f"region=Prague&{defaults}"
    wait_for_groups(page, query)
    prague = get_json(api, f"{sample_api}/trip-groups?{query}")
    assert {group["region"] for group in prague["groups"]} == {"Prague"}
    assert prague["total_groups"] < first["total_groups"]
    assert_shows_groups(page, prague)

    # And a datasource.
    page.select_option("#datasource", "cheap_mobile")
    query = f"region=Prague&datasource=cheap_mobile&{defaults}"
    wait_for_groups(page, query)
    assert_shows_groups(page, get_json(api, f"{sample_api}/trip-groups?{query}"))

    # The groups' own choices: the coarsest cells and the widest buckets the API keeps.
    resolutions = page.locator("#group-resolution option").evaluate_all(
        "(o) => o.map((x) => x.value)"
    )
    buckets = page.locator("#group-bucket option").evaluate_all("(o) => o.map((x) => x.value)")
    coarsest, widest = min(resolutions, key=int), max(buckets, key=int)
    page.select_option("#datasource", "")
    page.select_option("#group-resolution", coarsest)
    page.select_option("#group-bucket", widest)
    query = (
        f"region=Prague&resolution={coarsest}&bucket={widest}&min_trips=1"
        f"&limit={first['limit']}&offset=0"
    )
    wait_for_groups(page, query)
    assert_shows_groups(page, get_json(api, f"{sample_api}/trip-groups?{query}"))

    # No two of the sample's trips are alike: none is left with two trips or more.
    page.fill("#group-min-trips", "2")
    page.locator("#group-min-trips").dispatch_event("change")
    query = query.replace("min_trips=1", "min_trips=2")
    wait_for_groups(page, query)
    assert get_json(api, f"{sample_api}/trip-groups?{query}")["total_groups"] == 0
    assert_shows_groups(page, {"groups": []})
    assert page.text_content("#groups-summary") == "No group has 2 trips or more."
    assert page.is_disabled("#groups-next") and page.is_disabled("#groups-previous")
    assert_clean(watched)


def test_a_refused_group_question_shows_the_apis_problem(
    watched: Watched, api: requests.Session, sample_api: str
) -> None:
    page = watched.page
    defaults = group_defaults(api, sample_api)
    wait_for_groups(page, defaults)
    page.fill("#group-min-trips", "0")
    page.locator("#group-min-trips").dispatch_event("change")
    query = defaults.replace("min_trips=1", "min_trips=0")
    wait_for_groups(page, query)
    problem = get_json(api, f"{sample_api}/trip-groups?{query}", status=400)
    shown = page.evaluate(
        """() => ({
            state: document.getElementById('groups').dataset.state,
            error: document.getElementById('groups-error').textContent,
            rows: document.querySelectorAll('#group-table tbody tr').length,
            lines: document.querySelectorAll('#map path.group-line').length,
        })"""
    )
    assert shown["state"] == "error"
    assert f"400 {problem['title']}: {problem['detail']}" in shown["error"]
    for item in problem["invalid_params"]:
        assert f"{item['name']}: {item['reason']}" in shown["error"]
    assert shown["rows"] == 0
    assert shown["lines"] == 0
    # The weekly average is not touched.
    assert shown_answer(page)["error"] is None
    assert watched.failed == [f"400 {sample_api}/trip-groups?{query}"]
    assert [text for text in watched.errors if "status of 400" not in text] == []

    page.fill("#group-min-trips", "1")
    page.locator("#group-min-trips").dispatch_event("change")
    wait_for_groups(page, defaults)
    assert_shows_groups(page, get_json(api, f"{sample_api}/trip-groups?{defaults}"))


def test_a_new_ingestion_appears_live_without_reload(
    watched: Watched, connect_stack: Settings
) -> None:
    page = watched.page
    page.wait_for_selector('#live[data-state="open"]')
    page.wait_for_selector('#batches li[data-batch="1"]')
    # Survives only if the page is never reloaded.
    page.evaluate("() => { window.notReloaded = true; }")
    owner = connect_stack.database_dsn

    batch_id = new_batch(owner)
    page.wait_for_selector(f'#batches li[data-batch="{batch_id}"][data-status="claimed"]')
    assert page.locator("#batches li").first.get_attribute("data-batch") == str(batch_id)
    for step in (Status.PROCESSED, Status.STAGED, Status.PUBLISHED, Status.DONE):
        advance(owner, batch_id, step)
        page.wait_for_selector(f'#batches li[data-batch="{batch_id}"][data-status="{step}"]')
    assert page.evaluate("() => window.notReloaded") is True
    assert page.locator(f'#batches li[data-batch="{batch_id}"] .status').text_content() == "done"
    assert_clean(watched)
