"""Benchmark: a ~1 MB trip file landed -> queryable through the DAG, per Spark runner.

For each runner in `--runners` (default `submit,connect`: spark-submit per batch, the path
before issue 11 and the baseline, then the stack's warm Spark Connect server), in turn:
starts a whole stack the way `make run` and the end-to-end tests do (`tripflow up`:
PostgreSQL, Airflow with the DAG unpaused, the API, and the Connect server when the runner
is `connect`), under a fresh home in the benchmarks' directory on free ports, with
TRIPFLOW_SPARK_RUNNER set and every other setting at its default. Then, `--files` times, one
after another:

  1. (untimed) generates a ~1 MB file (`--rows`, default 8,000 trips of 125 bytes each) of
     new trips, time-ordered: file k holds the k-th day of 2019, so no trip repeats;
  2. puts it into the lake's landing dir atomically, as `tripflow add-file` does: the clock
     starts when the file has its final name (landed);
  3. follows the batch's status as PostgreSQL pushes it (claimed, processed, staged,
     published, done) and asks the API `/weekly-average?from=<day>&to=<next day>` every
     0.1 s until its answer counts every trip of the file (queryable).

It prints each file's steps (landed -> claimed: the sensor and the DAG run starting;
claimed -> processed: Spark; processed -> staged; staged -> published; published -> done:
archive; done -> the API's answer), then when each Airflow task of the run started and
ended (from Airflow's metadata database: the time inside tasks against the time between
them, scheduling and task process start), and, per runner, the first file after `tripflow up` and
the median of the later ones (the steady state of a stack that is already up: what a feed
landing every hour sees), their ratio to the baseline's and to issue 11's 10 s target.

A runner named with `+events` (`connect+events`) runs the stack of the event-driven start
instead (issue 12): the lake in a bucket of the local S3 server (versitygw), each upload an
event on Kafka that the triggerer turns into a DAG run, no sensor and no sweep; the file is
uploaded under its final name, as `tripflow add-file` does on S3.

Usage: .venv/bin/python benchmarks/landing_latency.py [--runners submit,connect,connect+events]
           [--files 3] [--rows 8000] [--keep]
`make bench-latency` runs it. TRIPFLOW_BENCH_HOME moves the benchmarks' home.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from common import BENCH_HOME

from tripflow.config import Settings, SparkRunnerMode
from tripflow.generate import Order, generate_trips
from tripflow.lake import LANDING, open_lake
from tripflow.services.airflow import metadata_url
from tripflow.warehouse.database import connect
from tripflow.warehouse.ingestions import BatchFollower

TRIPFLOW = str(Path(sys.executable).parent / "tripflow")
WORK = BENCH_HOME / "latency"
TARGET_SECONDS = 10.0
# The trigger suffix of a variant whose DAG runs start from the bucket's upload events.
EVENTS = "events"
FIRST_DAY = datetime(2019, 1, 1)
POLL_SECONDS = 0.1
DAG_ID = "tripdata-process"
# After the API counts a file's trips, how long to wait for its batch's `done` (the archive)
# before landing the next file, so one file's run never delays the next one's claim.
DONE_WAIT_SECONDS = 120
# The marks a batch passes (each timed from the one reached before it: the API may count
# the trips before `published` arrives, and does before the archive reports `done`), and
# what the time up to each is made of.
STEP_NOTES = {
    "claimed": "sensor, DAG run",
    "processed": "Spark",
    "staged": "COPY",
    "published": "publish",
    "done": "archive",
    "queryable": "the API counts the trips",
}


class LatencyError(RuntimeError):
    """A file did not become queryable."""


@dataclass(frozen=True)
class TaskRun:
    """One Airflow task instance of the run that loaded a file, in seconds after landing."""

    task: str
    started: float
    ended: float | None


@dataclass
class Landing:
    """When one landed file reached each step, in seconds after it landed."""

    rows: int
    bytes: int
    marks: dict[str, float] = field(default_factory=dict)
    tasks: list[TaskRun] = field(default_factory=list)

    def seconds_in_tasks(self) -> float:
        """Seconds until queryable that some task of the run was running (not waiting for
        the scheduler or a task process to start); the sensor counts from the landing."""
        end = self.total
        spans = sorted(
            (max(task.started, 0.0), min(task.ended if task.ended is not None else end, end))
            for task in self.tasks
        )
        covered, reached = 0.0, 0.0
        for start, stop in spans:
            start = max(start, reached)
            if stop > start:
                covered += stop - start
                reached = stop
        return covered

    @property
    def total(self) -> float:
        """Seconds from landed to queryable."""
        return self.marks["queryable"]

    def steps(self) -> dict[str, float]:
        """Seconds up to each mark reached, from the mark reached before it."""
        seconds: dict[str, float] = {}
        previous = 0.0
        for step, moment in sorted(self.marks.items(), key=lambda item: item[1]):
            seconds[step] = moment - previous
            previous = moment
        return seconds

    def phases(self) -> dict[str, float]:
        """Seconds of the fixed phases the summary compares (the `published` notification
        and the API's answer race, so both end one phase): landed -> claimed -> processed
        -> staged -> queryable."""
        bounds = [("claim", "claimed"), ("spark", "processed"), ("copy", "staged")]
        phases: dict[str, float] = {}
        previous = 0.0
        for name, mark in bounds:
            if mark in self.marks:
                phases[name] = self.marks[mark] - previous
                previous = self.marks[mark]
        phases["publish+api"] = self.total - previous
        return phases

    def labels(self) -> dict[str, str]:
        """Name each step by the marks it runs between."""
        names: dict[str, str] = {}
        previous = "landed"
        for step in self.steps():
            names[step] = f"{previous} -> {step} ({STEP_NOTES[step]})"
            previous = step
        return names


def free_port() -> int:
    """Return a TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def variant_parts(variant: str) -> tuple[SparkRunnerMode, bool]:
    """Split a variant name (`connect`, `connect+events`) into its runner and trigger."""
    runner, _plus, trigger = variant.partition("+")
    return SparkRunnerMode(runner), trigger == EVENTS


def stack_values(variant: str) -> dict[str, Any]:
    """Settings of one variant's stack: its own home and free ports, the runner chosen, and
    for `+events` the lake in a bucket of the local S3 server whose uploads start the DAG
    through Kafka (no sensor, no sweep)."""
    runner, events = variant_parts(variant)
    values: dict[str, Any] = {
        "home": WORK / variant.replace("+", "-"),
        "database_port": free_port(),
        "api_port": free_port(),
        "airflow_port": free_port(),
        "spark_connect_port": free_port(),
        "spark_runner": runner,
    }
    if events:
        values |= {
            "lake_url": "s3://tripflow-latency/lake",
            "s3_endpoint": f"http://127.0.0.1:{free_port()}",
            "events_url": f"kafka://127.0.0.1:{free_port()}/tripflow-latency",
            "kafka_controller_port": free_port(),
            "events_sweep_minutes": 0,
        }
    return values


def tripflow(environment: dict[str, str], *arguments: str) -> float:
    """Run a tripflow command in the stack's home; return its seconds, raise if it fails."""
    started = time.perf_counter()
    completed = subprocess.run(
        [TRIPFLOW, *arguments],
        env=environment,
        cwd=environment["TRIPFLOW_HOME"],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise LatencyError(
            f"tripflow {' '.join(arguments)} exited with {completed.returncode}:\n"
            f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )
    return time.perf_counter() - started


def api_trips(settings: Settings, start: datetime, end: datetime) -> int | None:
    """Return the trips the API counts between two times, None if it does not answer 200."""
    query = urlencode({"from": f"{start:%Y-%m-%d}", "to": f"{end:%Y-%m-%d}"})
    url = f"http://127.0.0.1:{settings.api_port}/weekly-average?{query}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.load(response)
    except (urllib.error.URLError, TimeoutError, ValueError):
        return None
    return int(answer["trips"])


def airflow_tasks(settings: Settings, landed_at: datetime) -> list[TaskRun]:
    """Return the task instances of the DAG runs that claimed a batch after the landing, in
    seconds after it (their sensor started before it)."""
    url = metadata_url(settings).replace("postgresql+psycopg2://", "postgresql://", 1)
    with closing(connect(url)) as conn:
        rows = conn.execute(
            "SELECT task_id, start_date, end_date FROM task_instance"
            " WHERE dag_id = %(dag)s AND start_date IS NOT NULL AND run_id IN ("
            "   SELECT run_id FROM task_instance WHERE dag_id = %(dag)s"
            "   AND task_id = 'claim_batch' AND start_date >= %(landed)s)"
            " ORDER BY start_date",
            {"dag": DAG_ID, "landed": landed_at},
        ).fetchall()

    def after(moment: datetime) -> float:
        return (moment - landed_at).total_seconds()

    return [
        TaskRun(str(task), after(start), None if end is None else after(end))
        for task, start, end in rows
    ]


def land_and_follow(settings: Settings, path: Path, rows: int, day: datetime) -> Landing:
    """Land one file and return when each step was reached, until the API counts its trips."""
    lake = open_lake(settings)
    landing = Landing(rows, path.stat().st_size)
    deadline = time.monotonic() + 900
    with BatchFollower(settings.database_dsn) as follower:
        landed_path = lake.put(path, LANDING)
        landed = time.perf_counter()
        landed_at = datetime.now(UTC)
        batch: int | None = None
        done_by = float("inf")
        while "queryable" not in landing.marks or (
            "done" not in landing.marks and time.monotonic() < done_by
        ):
            if time.monotonic() > deadline:
                raise LatencyError(f"{landed_path} not queryable after 900 s: {landing.marks}")
            for note in follower.listener.notifies(timeout=POLL_SECONDS, stop_after=1):
                event = json.loads(note.payload)
                # The first batch claimed after the landing is this file's: one at a time.
                if batch is None and event.get("status") == "claimed":
                    batch = int(event["batch_id"])
                if event.get("batch_id") != batch:
                    continue
                if event.get("status") == "failed":
                    raise LatencyError(f"batch {batch} failed: {event}")
                if event.get("error"):
                    print(f"      batch {batch}: an attempt failed (retried): {event['error']}")
                landing.marks.setdefault(str(event["status"]), time.perf_counter() - landed)
            if "queryable" in landing.marks:
                continue
            if api_trips(settings, day, day + timedelta(days=1)) == rows:
                landing.marks["queryable"] = time.perf_counter() - landed
                done_by = time.monotonic() + DONE_WAIT_SECONDS
    landing.tasks = airflow_tasks(settings, landed_at)
    return landing


def print_landing(number: int, landing: Landing) -> None:
    """Print one file's steps and total."""
    print(f"    file {number}: {landing.rows:,} trips, {landing.bytes / 1e6:.2f} MB")
    labels = landing.labels()
    for step, seconds in landing.steps().items():
        print(f"      {labels[step]:48s} {seconds:7.1f} s")
    print(f"      {'landed -> queryable':48s} {landing.total:7.1f} s")
    if landing.tasks:
        print("      Airflow tasks, seconds after landing (start .. end):")
        for task in landing.tasks:
            ended = "running" if task.ended is None else f"{task.ended:6.1f}"
            print(f"        {task.task:24s} {task.started:6.1f} .. {ended}")
        inside = landing.seconds_in_tasks()
        print(
            f"      until queryable: {inside:.1f} s inside tasks, "
            f"{landing.total - inside:.1f} s between them (scheduling, task start)"
        )


def measure_runner(variant: str, files: int, rows: int, seed: int, keep: bool) -> list[Landing]:
    """Start a stack of this variant, land `files` files one after another, stop it."""
    values = stack_values(variant)
    home: Path = values["home"]
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    home.chmod(0o755)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("TRIPFLOW_")
    }
    environment |= {f"TRIPFLOW_{key.upper()}": str(value) for key, value in values.items()}
    settings = Settings(_env_file=None, **values)
    print(f"\n{variant}: tripflow up in {home}")
    landings: list[Landing] = []
    try:
        print(f"  stack up in {tripflow(environment, 'up'):.1f} s")
        for number in range(1, files + 1):
            day = FIRST_DAY + timedelta(days=number - 1)
            made = generate_trips(
                rows,
                home / "generated" / str(number),
                seed=seed + number,
                order=Order.TIME,
                start=day,
                days_per_file=1,
            )
            (path,) = (item.path for item in made.files)
            named = path.with_name(f"latency-{variant.replace('+', '-')}-{number}.csv")
            path.rename(named)
            try:
                landing = land_and_follow(settings, named, rows, day)
            except LatencyError as error:
                # Keep what was measured before: the summary says how many files counted.
                print(f"  {variant}: file {number}: {error}", file=sys.stderr)
                break
            print_landing(number, landing)
            landings.append(landing)
    finally:
        try:
            print(f"  stack down in {tripflow(environment, 'down'):.1f} s")
        finally:
            if not keep:
                shutil.rmtree(home, ignore_errors=True)
    return landings


def steady(landings: Sequence[Landing]) -> float | None:
    """Return the median latency of the files after the first (None with one file)."""
    later = [landing.total for landing in landings[1:]]
    return statistics.median(later) if later else None


def print_summary(results: dict[str, list[Landing]]) -> None:
    """Print each runner's first and steady latency, against the baseline and the target."""
    print("\nsummary: landed -> queryable through the DAG")
    baseline_runner = next(iter(results))
    baseline = results[baseline_runner]
    print(
        f"  {'runner':14s} {'files':>5s} {'first s':>8s} {'steady s':>9s} "
        f"{'vs ' + baseline_runner:>10s} {'/ 10 s':>7s} {'in tasks':>8s} {'between':>8s}"
        "   median seconds per phase (later files)"
    )
    for runner, landings in results.items():
        first = landings[0].total
        later = steady(landings)
        shown = later if later is not None else first
        base = steady(baseline) or baseline[0].total
        counted = landings[1:] or landings[:1]
        # Phases every counted file reached.
        phases = {
            phase: statistics.median(landing.phases()[phase] for landing in counted)
            for phase in counted[0].phases()
            if all(phase in landing.phases() for landing in counted)
        }
        detail = ", ".join(f"{phase} {seconds:.1f}" for phase, seconds in phases.items())
        inside = statistics.median(landing.seconds_in_tasks() for landing in counted)
        between = statistics.median(
            landing.total - landing.seconds_in_tasks() for landing in counted
        )
        print(
            f"  {runner:14s} {len(landings):5d} {first:8.1f} "
            f"{'-' if later is None else f'{later:.1f}':>9s} "
            f"{shown / base:9.2f}x {shown / TARGET_SECONDS:6.2f}x {inside:8.1f} {between:8.1f}"
            f"   {detail}"
        )
    print(
        f"  (the ratio to {baseline_runner} and to the {TARGET_SECONDS:g} s target use the steady"
        " figure, or the first with one file; target of issue 11: <= 1.00x)"
    )


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[1:]),
    )
    parser.add_argument(
        "--runners",
        default=",".join((SparkRunnerMode.SUBMIT, SparkRunnerMode.CONNECT)),
        help="TRIPFLOW_SPARK_RUNNER values to measure, the first being the baseline, each "
        "optionally with +events (the S3 lake's upload events start the DAG instead of the "
        "sensor) (default: submit,connect)",
    )
    parser.add_argument("--files", type=int, default=3, help="files landed per stack")
    parser.add_argument("--rows", type=int, default=8_000, help="trips per file (~1 MB)")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("--keep", action="store_true", help="keep each stack's home")
    arguments = parser.parse_args(argv)
    names = [name.strip() for name in arguments.runners.split(",") if name.strip()]
    known = {f"{runner}{trigger}" for runner in SparkRunnerMode for trigger in ("", f"+{EVENTS}")}
    unknown = sorted(set(names) - known)
    if unknown or not names:
        parser.error(f"--runners takes {','.join(sorted(known))}, got {arguments.runners!r}")
    arguments.runners = list(dict.fromkeys(names))
    if arguments.files < 1 or arguments.rows < 1:
        parser.error("--files and --rows must be at least 1")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every runner; return the exit status."""
    arguments = parse_arguments(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    print(
        f"landing latency: {arguments.files} file(s) of {arguments.rows:,} trips per stack; "
        f"runners {', '.join(arguments.runners)}; target <= {TARGET_SECONDS:g} s"
    )
    results: dict[str, list[Landing]] = {}
    for runner in arguments.runners:
        try:
            landings = measure_runner(
                runner, arguments.files, arguments.rows, arguments.seed, arguments.keep
            )
        except LatencyError as error:
            print(f"  {runner}: {error}", file=sys.stderr)
            continue
        if landings:
            results[runner] = landings
    if not results:
        return 1
    print_summary(results)
    complete = all(len(results.get(runner, [])) == arguments.files for runner in arguments.runners)
    if not complete:
        print("  INCOMPLETE: not every file of every runner became queryable", file=sys.stderr)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
