"""kill -9 of each task of the `tripdata-process` DAG at its riskiest point, and of the Airflow
scheduler mid-run, on one real stack (`tripflow up`): each time the DAG finishes the batch by
itself, every distinct trip of its files is stored exactly once and each file is archived once.

The points are found by watching real state; the product has no hook for them. A task's
process is the one Airflow records for the running task instance (`task_instance.pid`: the
task runner under the LocalExecutor's worker, titled `airflow worker -- <ti id>`, not the
worker itself); a statement's process is the one owning the client port PostgreSQL shows for
it. One point lasts microseconds, the archive's (a file moved, its new place not yet
recorded): the test holds a row lock on the batch's file rows, so the archive's UPDATE waits
there, its file already moved, until the kill, as it would behind any other writer. The
scheduler is killed twice in one run: while the Spark task runs under it, then inside one of
its transactions (waiting, the same way, on a row lock of the next task's instance).

Scenarios share the stack and run in order, one batch each; each prints how long the batch
took from the kill to `done` (a killed task's retry waits the DAG's retry_delay, 30 s)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.e2e.command import tripflow
from tests.e2e.conftest import remove_stack, stack_environment
from tests.reference import read_trips
from tripflow.generate import GenerationSummary, generate_trips
from tripflow.records import Trip
from tripflow.services.airflow import DAG_ID, METADATA_DATABASE
from tripflow.services.supervisor import supervisor_call

pytestmark = pytest.mark.e2e

# Generous liveness bounds, not performance targets.
TASK_START_TIMEOUT = 240.0
BATCH_TIMEOUT = 300.0
# Rows per file where the point is a window of time (the Spark job, COPY, the INSERT): wide
# enough to be seen by polling, small enough to keep the file quick.
WINDOW_ROWS = 60_000
TASK_TITLE = "airflow worker -- "
T = TypeVar("T")


@dataclass
class Stack:
    """One running stack, a connection to each of its databases, and the trips the
    scenarios stored in it so far."""

    env: dict[str, str]
    url: str
    airflow_url: str
    warehouse: psycopg.Connection[Any]
    airflow: psycopg.Connection[Any]
    stored: set[Trip] = field(default_factory=set)
    # Processes of the stack that `tripflow down` does not stop, to end after it.
    strays: list[psutil.Process] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return Path(self.env["TRIPFLOW_HOME"])

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    def query(self, statement: str, *params: object) -> list[Any]:
        """Run a statement on the warehouse; return its rows."""
        return self.warehouse.execute(statement, params).fetchall()

    def query_airflow(self, statement: str, *params: object) -> list[Any]:
        """Run a statement on Airflow's metadata database; return its rows."""
        return self.airflow.execute(statement, params).fetchall()


@dataclass(frozen=True)
class TaskProcess:
    """The process of one running try of a DAG task."""

    task_id: str
    run_id: str
    try_number: int
    pid: int


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = stack_environment()
    strays: list[psutil.Process] = []
    try:
        tripflow(env, "up")
        url = tripflow(env, "db", "url").stdout.strip()
        airflow_url = make_conninfo(url, dbname=METADATA_DATABASE)
        with (
            psycopg.connect(url, autocommit=True) as warehouse,
            psycopg.connect(airflow_url, autocommit=True) as airflow,
        ):
            running = Stack(env, url, airflow_url, warehouse, airflow)
            strays = running.strays
            yield running
    finally:
        remove_stack(env)
        for process in strays:
            # psutil checks the start time too: a reused pid is left alone.
            if process.is_running():
                process.kill()


def wait_for(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.02) -> T:
    """Call `check` until it returns something other than None; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while (found := check()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return found


def generate(
    stack: Stack, name: str, rows: int, files: int = 1, seed: int = 0
) -> GenerationSummary:
    """Write trip files named `<name>-<n>.csv` with invalid rows and exact repeats."""
    directory = stack.home / "generated" / name
    summary = generate_trips(
        rows, directory, files=files, seed=seed, invalid_rate=0.01, duplicate_rate=0.02
    )
    for number, item in enumerate(summary.files, start=1):
        Path(item.path).rename(directory / f"{name}-{number}.csv")
    return summary


def paths_of(stack: Stack, name: str) -> list[Path]:
    return sorted((stack.home / "generated" / name).glob(f"{name}-*.csv"))


def add_files(stack: Stack, name: str) -> None:
    tripflow(stack.env, "add-file", *(str(path) for path in paths_of(stack, name)))


def batch_of(stack: Stack, file_name: str) -> int | None:
    rows = stack.query("SELECT batch_id FROM ingestion_file WHERE name = %s", file_name)
    return int(rows[0][0]) if rows else None


def batch_status(stack: Stack, batch_id: int) -> str:
    (row,) = stack.query("SELECT status FROM ingestion_batch WHERE batch_id = %s", batch_id)
    return str(row[0])


def wait_for_status(stack: Stack, batch_id: int, wanted: str, timeout: float) -> None:
    def reached() -> bool | None:
        status = batch_status(stack, batch_id)
        assert status != "failed", f"batch {batch_id} was set aside as failed"
        return True if status == wanted else None

    wait_for(f"batch {batch_id} to be {wanted}", reached, timeout, every=0.05)


def spark_task_writing(stack: Stack, name: str) -> tuple[int, TaskProcess]:
    """Wait for the batch of the files `name` to be claimed and its Spark task's job to be
    writing the validated Parquet; return the batch and the task's process."""
    batch_id = wait_for("the claimed batch", lambda: batch_of(stack, f"{name}-1.csv"), 120)
    spark = running_task(stack, "validate_with_spark")
    trusted = stack.lake / "data" / "trusted" / "tripdata" / f"batch={batch_id}"
    # Each run of the job writes under an attempt=<run>/ directory of its own.
    wait_for(
        "the Spark job to write", lambda: next(trusted.glob("attempt=*/_temporary"), None), 240
    )
    return batch_id, spark


def running_task(stack: Stack, task_id: str, timeout: float = TASK_START_TIMEOUT) -> TaskProcess:
    """Wait for a try of the task to run; return its process as Airflow recorded it."""

    def look() -> TaskProcess | None:
        rows = stack.query_airflow(
            "SELECT run_id, try_number, pid FROM task_instance WHERE dag_id = %s"
            " AND task_id = %s AND state = 'running' AND pid IS NOT NULL",
            DAG_ID,
            task_id,
        )
        return TaskProcess(task_id, rows[0][0], rows[0][1], rows[0][2]) if rows else None

    return wait_for(f"{task_id} to run", look, timeout)


def statement_process(stack: Stack, pattern: str, *, waiting_on_lock: bool = False) -> int:
    """Wait until a tripflow statement matching `pattern` runs; return the pid of the process
    on the other end of its connection."""
    condition = " AND wait_event_type = 'Lock'" if waiting_on_lock else ""

    def look() -> int | None:
        rows = stack.query(
            "SELECT client_port FROM pg_stat_activity WHERE application_name = 'tripflow'"
            f" AND state = 'active' AND query LIKE %s{condition}",
            pattern,
        )
        return int(rows[0][0]) if rows else None

    return port_owner(
        wait_for(f"a statement like {pattern!r}", look, TASK_START_TIMEOUT), database_port(stack)
    )


def database_port(stack: Stack) -> int:
    return int(conninfo_to_dict(stack.url)["port"])  # type: ignore[arg-type]


def port_owner(port: int, server: int) -> int:
    """Return the pid of a process holding the connection to the server from `port`."""
    (owner,) = {
        connection.pid
        for connection in psutil.net_connections("tcp")
        if connection.laddr
        and connection.laddr.port == port
        and connection.raddr
        and connection.raddr.port == server
    }
    assert owner is not None
    return owner


def kill_task(task: TaskProcess) -> float:
    """SIGKILL a task's process (not its supervisor); return the moment."""
    title = psutil.Process(task.pid).cmdline()[0]
    assert title.startswith(TASK_TITLE) and "LocalExecutor" not in title, title
    os.kill(task.pid, signal.SIGKILL)
    return time.monotonic()


def killed_try_failed(stack: Stack, task: TaskProcess) -> bool:
    """Tell whether Airflow recorded the killed try as failed and ran the task again."""
    history = stack.query_airflow(
        "SELECT state FROM task_instance_history WHERE dag_id = %s AND task_id = %s"
        " AND run_id = %s AND try_number = %s",
        DAG_ID,
        task.task_id,
        task.run_id,
        task.try_number,
    )
    return [row[0] for row in history] == ["failed"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def distinct_trips(paths: list[Path]) -> set[Trip]:
    """Return the distinct valid trips of CSV files, read with the plain-Python contract."""
    return {row.trip for path in paths for row in read_trips(path)}


def stored_trips(stack: Stack, batch_id: int) -> list[Trip]:
    rows = stack.query(
        "SELECT region, ST_X(origin_coord), ST_Y(origin_coord), ST_X(destination_coord),"
        " ST_Y(destination_coord), datetime, datasource FROM tripdata WHERE batch_id = %s",
        batch_id,
    )
    return [Trip(*row) for row in rows]


def finish(
    stack: Stack,
    generated: GenerationSummary,
    name: str,
    batch_id: int,
    killed_at: float,
    what: str,
) -> None:
    """Wait for the DAG to finish the batch, say how long it took from the kill, and check
    that nothing was lost or doubled."""
    wait_for_status(stack, batch_id, "done", BATCH_TIMEOUT)
    print(f"\n{what}: batch {batch_id} done {time.monotonic() - killed_at:.1f} s after the kill")
    check_batch(stack, generated, name, batch_id)


def check_batch(stack: Stack, generated: GenerationSummary, name: str, batch_id: int) -> None:
    """Every distinct trip of the files stored once, each file archived once, counts right."""
    paths = paths_of(stack, name)
    expected = distinct_trips(paths)
    stored = stored_trips(stack, batch_id)
    assert len(stored) == len(expected)
    assert set(stored) == expected
    stack.stored |= expected
    assert stack.query("SELECT count(*) FROM tripdata") == [(len(stack.stored),)]
    assert stack.query("SELECT count(*) FROM staging_tripdata") == [(0,)]
    assert generated.distinct_trips == len(expected)
    assert stack.query(
        "SELECT status, files, rows_read, rows_loaded, rows_rejected, rows_duplicate"
        " FROM ingestion_batch WHERE batch_id = %s",
        batch_id,
    ) == [
        (
            "done",
            len(paths),
            generated.rows,
            len(expected),
            generated.invalid_rows,
            generated.duplicates,
        )
    ]
    for path in paths:
        claims = stack.query(
            "SELECT batch_id, processed_path FROM ingestion_file WHERE name = %s", path.name
        )
        archived = f"data/processed/tripdata/{batch_id}/{path.name}"
        assert claims == [(batch_id, archived)]
        assert sha256(stack.lake / archived) == sha256(path)
        assert not (stack.lake / "data" / "raw" / "tripdata" / path.name).exists()
    assert not (stack.lake / "data" / "failed").exists()


def test_claim_and_archive_killed_after_their_writes_resume_the_same_batch(stack: Stack) -> None:
    name = "claim-archive"
    generated = generate(stack, name, rows=4_000, files=2, seed=21)
    first = f"{name}-1.csv"
    with psycopg.connect(stack.url, autocommit=True) as listener:
        listener.execute("LISTEN tripflow_ingestion")
        add_files(stack, name)
        claim = running_task(stack, "claim_batch")
        # Pushed when the claim commits: the batch is recorded, the task has not returned.
        for note in listener.notifies(timeout=TASK_START_TIMEOUT):
            if json.loads(note.payload)["status"] == "claimed":
                break
        claimed_at = kill_task(claim)
    batch_id = wait_for("the claimed batch", lambda: batch_of(stack, first), 10)
    assert batch_status(stack, batch_id) == "claimed"

    wait_for_status(stack, batch_id, "published", BATCH_TIMEOUT)
    print(f"\nclaim_batch killed: batch {batch_id} published {time.monotonic() - claimed_at:.1f} s")
    with psycopg.connect(stack.url) as lock:
        lock.execute("SELECT 1 FROM ingestion_file WHERE batch_id = %s FOR UPDATE", (batch_id,))
        owner = statement_process(
            stack, "UPDATE ingestion_file SET processed_path%", waiting_on_lock=True
        )
        archive = running_task(stack, "archive_files", timeout=1)
        assert owner == archive.pid
        landing = stack.lake / "data" / "raw" / "tripdata"
        assert (stack.lake / f"data/processed/tripdata/{batch_id}/{first}").exists()
        assert not (landing / first).exists()
        assert stack.query("SELECT processed_path FROM ingestion_file WHERE name = %s", first) == [
            (None,)
        ]
        archived_at = kill_task(archive)
        lock.rollback()

    finish(
        stack,
        generated,
        name,
        batch_id,
        archived_at,
        "archive_files killed between move and record",
    )
    assert killed_try_failed(stack, claim)
    assert killed_try_failed(stack, archive)
    assert stack.query("SELECT count(*) FROM ingestion_batch") == [(1,)]


def test_spark_task_killed_while_its_job_writes_is_run_again(stack: Stack) -> None:
    name = "spark"
    generated = generate(stack, name, rows=WINDOW_ROWS, seed=22)
    add_files(stack, name)
    batch_id, spark = spark_task_writing(stack, name)
    connect_port = int(stack.env["TRIPFLOW_SPARK_CONNECT_PORT"])
    assert any(
        connection.raddr and connection.raddr.port == connect_port
        for connection in psutil.Process(spark.pid).net_connections("tcp")
    )
    killed_at = kill_task(spark)
    assert batch_status(stack, batch_id) == "claimed"

    finish(stack, generated, name, batch_id, killed_at, "validate_with_spark killed mid-job")
    assert killed_try_failed(stack, spark)


def test_publish_killed_in_its_copy_then_in_its_insert_publishes_once(stack: Stack) -> None:
    name = "publish"
    generated = generate(stack, name, rows=WINDOW_ROWS, seed=23)
    add_files(stack, name)
    batch_id = wait_for("the claimed batch", lambda: batch_of(stack, f"{name}-1.csv"), 120)

    copying = statement_process(stack, "COPY staging_tripdata%")
    first = running_task(stack, "publish_to_tripdata", timeout=1)
    assert copying == first.pid
    copy_killed_at = kill_task(first)
    assert batch_status(stack, batch_id) == "processed"
    inserting = statement_process(stack, "%INSERT INTO tripdata%")
    second = running_task(stack, "publish_to_tripdata", timeout=1)
    assert inserting == second.pid and second.try_number == first.try_number + 1
    print(f"\nCOPY killed: publish tried again {time.monotonic() - copy_killed_at:.1f} s later")
    insert_killed_at = kill_task(second)
    assert batch_status(stack, batch_id) == "staged"
    assert stack.query("SELECT count(*) FROM tripdata WHERE batch_id = %s", batch_id) == [(0,)]

    finish(
        stack,
        generated,
        name,
        batch_id,
        insert_killed_at,
        "publish_to_tripdata killed in its INSERT",
    )
    assert killed_try_failed(stack, first)
    assert killed_try_failed(stack, second)


def scheduler_process(stack: Stack) -> dict[str, Any]:
    """Return supervisord's view of the Airflow scheduler (its pid and state)."""
    (info,) = (
        info
        for info in supervisor_call(stack.home / "run" / "supervisor.sock", "getAllProcessInfo")
        if info["name"] == "airflow-scheduler"
    )
    return dict(info)


def kill_scheduler(stack: Stack) -> tuple[float, list[psutil.Process]]:
    """SIGKILL the scheduler alone, wait for supervisord to start it again; return the moment
    of the kill and the processes the killed one had started."""
    killed = scheduler_process(stack)
    children = psutil.Process(killed["pid"]).children()
    # The restart ends them; the fixture would end any left.
    stack.strays += children
    os.kill(killed["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    restarted = wait_for(
        "supervisord to restart the scheduler",
        lambda: (
            info
            if (info := scheduler_process(stack))["statename"] == "RUNNING"
            and info["pid"] != killed["pid"]
            else None
        ),
        120,
        every=0.5,
    )
    print(f"\nscheduler {killed['pid']} killed, {restarted['pid']} running")
    return killed_at, children


def waiting_on_lock(stack: Stack, pattern: str) -> int | None:
    """Return the client port of a metadata database session whose statement matching
    `pattern` waits on a lock, or None."""
    rows = stack.query_airflow(
        "SELECT client_port FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        pattern,
    )
    return int(rows[0][0]) if rows else None


def open_transactions(stack: Stack, processes: list[psutil.Process]) -> int:
    """Count the metadata database's sessions in a transaction whose connection is held by
    one of these processes."""
    server = database_port(stack)
    ports = [
        connection.laddr.port
        for process in processes
        if process.is_running()
        for connection in process.net_connections("tcp")
        if connection.raddr and connection.raddr.port == server
    ]
    (row,) = stack.query_airflow(
        "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(%s)"
        " AND xact_start IS NOT NULL",
        sorted(set(ports)),
    )
    return int(row[0])


def test_scheduler_killed_twice_mid_run_is_restarted_and_the_run_completes(
    stack: Stack,
) -> None:
    name = "scheduler"
    generated = generate(stack, name, rows=WINDOW_ROWS, seed=24)
    add_files(stack, name)
    batch_id, spark = spark_task_writing(stack, name)
    # LocalExecutor: the task runs under one of the scheduler's worker processes.
    under = {child.pid for child in psutil.Process(scheduler_process(stack)["pid"]).children()}
    assert psutil.Process(spark.pid).ppid() in under

    first_killed_at, _ = kill_scheduler(stack)
    print(f"the Spark task's process outlived it: {psutil.pid_exists(spark.pid)}")
    # Then inside its scheduling transaction: a row lock on the next task's instance makes
    # the restarted scheduler wait there, holding its lock on the DAG run, once the Spark task
    # ends and it schedules publish_to_tripdata.
    with psycopg.connect(stack.airflow_url) as lock:
        lock.execute(
            "SELECT 1 FROM task_instance WHERE dag_id = %s AND run_id = %s"
            " AND task_id = 'publish_to_tripdata' FOR UPDATE",
            (DAG_ID, spark.run_id),
        )
        port = wait_for(
            "the scheduler to wait on the lock",
            lambda: waiting_on_lock(stack, "UPDATE task_instance SET%"),
            BATCH_TIMEOUT,
        )
        # Its workers share the scheduler's connections (forked from it): either may be named.
        scheduler = psutil.Process(scheduler_process(stack)["pid"])
        family = {scheduler.pid, *(child.pid for child in scheduler.children())}
        assert port_owner(port, database_port(stack)) in family
        second_killed_at, children = kill_scheduler(stack)
        lock.rollback()
    # Its workers shared its connection, and so its transaction and locks: the restarted
    # scheduler ends them first (services/process_group.py: SIGTERM, SIGKILL after 10 s),
    # and the transaction with them.
    wait_for(
        "the killed scheduler's workers to be ended",
        lambda: True if not any(child.is_running() for child in children) else None,
        60,
        every=0.5,
    )
    assert open_transactions(stack, children) == 0

    finish(
        stack,
        generated,
        name,
        batch_id,
        second_killed_at,
        "airflow scheduler killed in its transaction",
    )
    print(f"batch {batch_id} done {time.monotonic() - first_killed_at:.1f} s after the first kill")
