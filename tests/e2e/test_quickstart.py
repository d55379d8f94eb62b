"""The quick start through the real `tripflow` command: spark-submit, managed PostgreSQL,
gunicorn. Slow (one JVM per ingest), so it is the one test of its kind."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import SAMPLE, free_port

TRIPFLOW = str(Path(sys.executable).parent / "tripflow")


@pytest.fixture
def environment() -> Iterator[dict[str, str]]:
    home = Path(tempfile.mkdtemp(prefix="tripflow-e2e-"))
    home.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIPFLOW_")}
    env |= {
        "TRIPFLOW_HOME": str(home),
        "TRIPFLOW_DATABASE_PORT": str(free_port()),
        "TRIPFLOW_API_PORT": str(free_port()),
        "TRIPFLOW_SPARK_MASTER": "local[2]",
        "TRIPFLOW_SPARK_DRIVER_MEMORY": "1g",
    }
    yield env
    subprocess.run([TRIPFLOW, "down"], env=env, cwd=home, capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)


def tripflow(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [TRIPFLOW, *args], env=env, cwd=env["TRIPFLOW_HOME"], capture_output=True, text=True
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def get(url: str) -> tuple[int, str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.load(error)


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
