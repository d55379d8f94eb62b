"""The quick start through the real `tripflow` command, without Airflow: spark-submit, the
managed PostgreSQL, the API under the stack's supervisor. Slow (one JVM per ingest)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SAMPLE
from tests.e2e.command import TRIPFLOW, get, tripflow


@pytest.mark.e2e
def test_quick_start_ingests_the_sample_and_the_api_answers(
    environment: dict[str, str], tmp_path: Path
) -> None:
    tripflow(environment, "db", "start")
    tripflow(environment, "add-file", str(SAMPLE))

    first = json.loads(tripflow(environment, "ingest", "--json").stdout)
    tripflow(environment, "add-file", str(SAMPLE))
    again = json.loads(tripflow(environment, "ingest", "--json").stdout)
    bad = tmp_path / "bad.csv"
    bad.write_text("region,origin,destination,when,source\nPrague,1,2,3,4\n")
    tripflow(environment, "add-file", str(bad))
    rejected = tripflow(environment, "ingest", ok=False)
    tripflow(environment, "up", "--no-airflow")

    assert [(b["status"], b["rows_read"], b["rows_loaded"]) for b in first] == [("done", 100, 100)]
    assert [(b["rows_loaded"], b["rows_duplicate"]) for b in again] == [(0, 100)]
    assert rejected.returncode == 1
    assert "bad.csv" in rejected.stderr and "wrong header" in rejected.stderr
    with SAMPLE.open() as handle:
        prague = sum(row["region"] == "Prague" for row in csv.DictReader(handle))
    api = f"http://127.0.0.1:{environment['TRIPFLOW_API_PORT']}"
    status, _, answer = get(f"{api}/weekly-average?region=Prague")
    assert status == 200
    assert answer["trips"] == prague
    assert answer["weekly_average"] == pytest.approx(prague / answer["weeks"])
    status, content_type, problem = get(f"{api}/weekly-average?bbox=1,2,3")
    assert (status, content_type) == (400, "application/problem+json")
    assert "bbox" in json.dumps(problem)


def batch_status(env: dict[str, str]) -> str | None:
    url = tripflow(env, "db", "url").stdout.strip()
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status FROM ingestion_batch ORDER BY batch_id LIMIT 1"
        ).fetchone()
    return None if row is None else str(row[0])


@pytest.mark.e2e
def test_ingest_killed_during_spark_resumes_and_stores_each_trip_once(
    environment: dict[str, str],
) -> None:
    tripflow(environment, "db", "start")
    tripflow(environment, "add-file", str(SAMPLE))
    spark_log = Path(environment["TRIPFLOW_HOME"]) / "logs" / "spark-batch-1.log"
    victim = subprocess.Popen(
        [TRIPFLOW, "ingest"],
        env=environment,
        cwd=environment["TRIPFLOW_HOME"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(600):
            if spark_log.exists() and "SparkContext" in spark_log.read_text(errors="replace"):
                break
            time.sleep(0.1)
        # SIGKILL the whole group: the CLI and its spark-submit JVM die mid-job.
        os.killpg(victim.pid, signal.SIGKILL)
    finally:
        victim.wait()
    assert batch_status(environment) == "claimed"

    resumed = json.loads(tripflow(environment, "ingest", "--json").stdout)

    assert [(b["batch_id"], b["status"], b["rows_loaded"]) for b in resumed] == [(1, "done", 100)]
    url = tripflow(environment, "db", "url").stdout.strip()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tripdata").fetchone() == (100,)


@pytest.mark.e2e
def test_ingest_leaves_a_file_still_being_written_and_loads_it_once_complete(
    environment: dict[str, str],
) -> None:
    tripflow(environment, "db", "start")
    landing = Path(environment["TRIPFLOW_HOME"]) / "lake" / "data" / "raw" / "tripdata"
    landing.mkdir(parents=True)
    lines = SAMPLE.read_text().splitlines(keepends=True)
    growing = landing / "growing.csv"
    growing.write_text(lines[0])

    def write_slowly() -> None:
        # Written straight into the landing dir, a line every 100 ms (~10 s for the sample):
        # what a careless writer does, with no temporary name and no rename.
        with growing.open("a") as handle:
            for item in lines[1:]:
                handle.write(item)
                handle.flush()
                time.sleep(0.1)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    try:
        early = tripflow(environment, "ingest", "--json")
    finally:
        writer.join()

    assert json.loads(early.stdout) == []
    assert "left growing.csv in the landing dir" in early.stderr
    done = json.loads(tripflow(environment, "ingest", "--json").stdout)
    assert [(b["status"], b["rows_read"], b["rows_loaded"]) for b in done] == [("done", 100, 100)]


@pytest.mark.e2e
def test_a_clone_in_a_private_home_runs_the_quick_start(environment: dict[str, str]) -> None:
    # Root's home on Debian is 0700: the `postgres` user cannot reach a clone in it.
    private = Path(tempfile.mkdtemp(prefix="tripflow-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    clone = private / "tripflow"
    repository = Path(__file__).resolve().parents[2]
    subprocess.run(["git", "clone", "--quiet", str(repository), str(clone)], check=True)
    # The clone's default home (.tripflow in the clone), as `make run` there would use.
    env = {key: value for key, value in environment.items() if key != "TRIPFLOW_HOME"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [TRIPFLOW, *args], env=env, cwd=clone, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        return result

    try:
        started = run("db", "start")
        run("add-file", str(SAMPLE))
        batches = json.loads(run("ingest", "--json").stdout)
        run("up", "--no-airflow")
        api = f"http://127.0.0.1:{env['TRIPFLOW_API_PORT']}"
        status, _, answer = get(f"{api}/weekly-average?bbox=14.2,49.9,14.7,50.2")
    finally:
        subprocess.run([TRIPFLOW, "down"], env=env, cwd=clone, capture_output=True, check=False)
        removed = subprocess.run(
            [TRIPFLOW, "db", "remove", "--yes"], env=env, cwd=clone, capture_output=True, text=True
        )
        shutil.rmtree(private, ignore_errors=True)
    if os.geteuid() == 0:
        assert "cannot reach" in started.stdout and "/var/lib/tripflow/" in started.stdout
    assert [(b["status"], b["rows_loaded"]) for b in batches] == [("done", 100)]
    assert status == 200 and answer["trips"] > 0
    assert removed.returncode == 0 and "deleted" in removed.stdout
