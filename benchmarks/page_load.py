"""Benchmark: the web page at `/` in headless Chromium (Debian's, driven by Playwright), first
load with an empty cache and warm loads after it, and what the page downloads.

A load counts as done when the page shows everything it shows on arrival: the map's region
layer, the answer to its first question (the whole table's weekly average), the largest
groups of similar trips and the list of ingestions with the live stream open. Against an
API already running (`--url`), or against the benchmarks' generated database of `--rows`
trips if it exists (never built here), served by `tripflow serve` on a free port for the
run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    bench_settings,
    database_exists,
    free_port,
    ready_serving,
    start_cluster,
)
from playwright.sync_api import Page, sync_playwright

from tripflow.warehouse.database import connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TRIPFLOW = ROOT / ".venv" / "bin" / "tripflow"
SHOWN = """() => document.querySelectorAll('#map path.region').length > 0
    && document.getElementById('answer').dataset.state === 'answered'
    && document.getElementById('groups').dataset.state === 'answered'
    && document.getElementById('live').dataset.state === 'open'
    && document.querySelector('#batches li[data-batch]') !== null"""
MEASURED = """() => {
    const navigation = performance.getEntriesByType('navigation')[0];
    const resources = performance.getEntriesByType('resource');
    return {
        shown_ms: performance.now(),
        dom_content_loaded_ms: navigation.domContentLoadedEventEnd,
        load_ms: navigation.loadEventEnd,
        transferred: navigation.transferSize
            + resources.reduce((sum, entry) => sum + entry.transferSize, 0),
        bodies: navigation.encodedBodySize
            + resources.reduce((sum, entry) => sum + entry.encodedBodySize, 0),
        requests: 1 + resources.length,
        from_cache: resources.filter((entry) => entry.transferSize === 0).length,
    };
}"""


def measure(page: Page, url: str) -> dict[str, Any]:
    """Open the page and return its timings and bytes once it shows everything."""
    page.goto(url)
    page.wait_for_function(SHOWN, polling=10, timeout=120_000)
    result: dict[str, Any] = page.evaluate(MEASURED)
    return result


@contextmanager
def served(database_url: str, serving_dir: Path) -> Iterator[str]:
    """Serve the API on a database and its serving copy with `tripflow serve` for the
    duration; yield its URL."""
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="tripflow-page-bench-"))
    environment = {
        **os.environ,
        "TRIPFLOW_HOME": str(home),
        "TRIPFLOW_DATABASE_URL": database_url,
        "TRIPFLOW_API_PORT": str(port),
        "TRIPFLOW_SERVING_DIR": str(serving_dir),
    }
    log = (home / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(TRIPFLOW), "serve", "--port", str(port)],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (home / "serve.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"tripflow serve did not start:\n{tail}") from None
                time.sleep(0.25)
        yield base
    finally:
        # gunicorn's master and workers (a session of their own); event streams can hold a
        # graceful stop up to gunicorn's 30 s, so a kill follows.
        for sent in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sent)
                process.wait(timeout=35)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        process.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def run(base: str, loads: int) -> None:
    """Load the page cold `loads` times and warm `loads` times; print medians."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        cold, warm = [], []
        for _ in range(loads):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            cold.append(measure(page, f"{base}/"))
            # The same tab again, as a person coming back: the cache holds the files.
            warm.append(measure(page, f"{base}/"))
            context.close()
        browser.close()
    for name, results in (("first load (empty cache)", cold), ("warm load", warm)):
        shown = statistics.median(result["shown_ms"] for result in results)
        ready = statistics.median(result["dom_content_loaded_ms"] for result in results)
        last = results[-1]
        print(
            f"{name}: everything shown {shown:.0f} ms (median of {len(results)}; "
            f"min {min(r['shown_ms'] for r in results):.0f}, max "
            f"{max(r['shown_ms'] for r in results):.0f}), DOMContentLoaded {ready:.0f} ms; "
            f"{last['requests']} requests, {last['from_cache']} from the cache, "
            f"{last['transferred'] / 1024:.1f} KiB transferred "
            f"({last['bodies'] / 1024:.1f} KiB of bodies)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="an API already running, e.g. http://127.0.0.1:50555")
    target.add_argument("--rows", type=int, help="the benchmarks' database of this many trips")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args(argv)
    if args.url:
        run(args.url.rstrip("/"), args.loads)
        return 0
    cluster = start_cluster(bench_settings())
    name = f"trips_{args.rows}_{args.seed}"
    if not database_exists(cluster, name):
        print(f"no database {name} under .bench: build it with `make bench-query ROWS=...`")
        return 1
    print(f"page load against {name}")
    url = cluster.url(name)
    # The copy a stack keeps (weekly averages; similar-trip groups are answered from it only).
    with closing(connect(url)) as conn:
        serving_dir = ready_serving(conn, url).copy.directory
    with served(url, serving_dir) as base:
        run(base, args.loads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
