"""claim -> process (Spark) -> load staging -> publish -> archive, used by the CLI and the DAG.

Each step records its end on the batch, so `ingest` after a crash resumes every unfinished
batch from the step it reached; every step can run twice without loading anything twice."""

from __future__ import annotations

import json
import logging
import os
import posixpath
import subprocess
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from tripflow.config import Settings, SparkRunnerMode
from tripflow.lake import PROCESSED, REJECTED, Lake, trusted_dir
from tripflow.records import DEFAULT_WINDOW, TripWindow
from tripflow.warehouse import ingestions
from tripflow.warehouse.ingestions import Status
from tripflow.warehouse.load import clear_staging, load_staging
from tripflow.warehouse.publish import DiskBudget, SegmentWriter, StagingLost, publish_batch

if TYPE_CHECKING:
    from tripflow.serving.copy import ServingCopy
    from tripflow.spark.preprocess import PreprocessJob
    from tripflow.spark.session import AnySession

log = logging.getLogger(__name__)

StepCallback = Callable[[int, str], None]
# Where the files of a batch set aside as failed are kept.
FAILED = "data/failed/tripdata"


class SparkJobError(RuntimeError):
    """The Spark job failed."""


class SparkRunner(Protocol):
    """Something that runs the Spark preprocess job to completion."""

    def run(self, job: PreprocessJob) -> None:
        """Run the job; raise SparkJobError if it fails."""


class SubmitRunner:
    """Run the job with `spark-submit`, as a cluster would: master and memory from settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def command(self, job: PreprocessJob, properties: Path | None = None) -> list[str]:
        """Return the spark-submit command line for a job; `properties` is the file of the
        lake's Hadoop settings (`write_spark_properties`) when the job has any."""
        import pyspark

        from tripflow.spark.session import s3a_jars

        spark_submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
        lake = []
        if job.hadoop_conf:
            # The S3A classes, on the driver's and (copied by Spark) the executors' classpath.
            lake += ["--jars", ",".join(s3a_jars(self.settings.s3a_jars))]
            if properties is not None:
                lake += ["--properties-file", str(properties)]
        cluster = []
        if self.settings.executor_memory is not None:
            cluster = ["--executor-memory", self.settings.executor_memory]
        return [
            str(spark_submit),
            "--master",
            self.settings.spark_master,
            "--driver-memory",
            self.settings.driver_memory,
            *cluster,
            "--conf",
            "spark.ui.enabled=false",
            *lake,
            job_application(),
            *job_arguments(job),
        ]

    def run(self, job: PreprocessJob) -> None:
        """Run spark-submit and wait for it."""
        from tripflow.spark.session import local_environment

        # The job imports tripflow: its Python must be this environment's.
        environment = {**os.environ, **local_environment()}
        log = self.settings.home_dir / "logs" / f"spark-batch-{job.batch_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        properties = None
        if job.hadoop_conf:
            properties = write_spark_properties(job, self.settings)
        try:
            with log.open("w") as output:
                result = subprocess.run(
                    self.command(job, properties),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=environment,
                )
        finally:
            if properties is not None:
                properties.unlink(missing_ok=True)
        if result.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise SparkJobError(
                f"Spark job for batch {job.batch_id} failed (exit {result.returncode}); "
                f"full log: {log}\n{tail}"
            )


def write_spark_properties(job: PreprocessJob, settings: Settings) -> Path:
    """Write the job's Hadoop settings (the lake's) as a spark-submit properties file,
    readable by this user only, and return it: they hold the lake's keys, which a command
    line would show to every `ps`, and which a cluster's executors need as much as the
    driver. The caller deletes it when the job has ended."""
    name = f"spark-batch-{job.batch_id}-{uuid.uuid4().hex[:8]}.properties"
    path = settings.home_dir / "run" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    # A backslash starts an escape in a properties file.
    lines = [
        f"spark.hadoop.{key} {value.replace(chr(92), chr(92) * 2)}"
        for key, value in job.hadoop_conf.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class SessionRunner:
    """Run the job inside an existing Spark session (tests, notebooks)."""

    def __init__(self, spark: AnySession) -> None:
        self.spark = spark

    def run(self, job: PreprocessJob) -> None:
        """Run the job in the session."""
        from tripflow.spark import preprocess

        preprocess.run(self.spark, job)


class ConnectRunner:
    """Run the job on a Spark Connect server (`sc://host:port`): a JVM already warm, so a
    batch pays for its rows only. Each job has a session of its own, released at the end."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, job: PreprocessJob) -> None:
        """Run the job in a new session on the server."""
        from tripflow.spark import preprocess
        from tripflow.spark.session import connect_session

        try:
            session = connect_session(self.url)
            try:
                preprocess.run(session, job)
            finally:
                session.stop()
        except Exception as error:
            # The server's errors carry a JVM stack trace; the batch records the first line.
            lines = str(error).strip().splitlines() or [""]
            raise SparkJobError(
                f"Spark job for batch {job.batch_id} failed on {self.url}: "
                f"{type(error).__name__}: {lines[0]}"
            ) from error


def warm_up(runner: SparkRunner, directory: Path) -> None:
    """Run the Spark job once over a few generated trips in a scratch directory, then remove
    it: the first job a new Spark Connect server runs spends most of its time compiling and
    loading what every later job reuses (measured: 24.6 s for the 100-row sample, then
    3-4.5 s), and the first real file should not be the one to pay for it."""
    import shutil

    from tripflow.generate import generate_trips
    from tripflow.spark.preprocess import PreprocessJob

    shutil.rmtree(directory, ignore_errors=True)
    try:
        generate_trips(200, directory / "landing", files=2, invalid_rate=0.05, duplicate_rate=0.05)
        files = sorted((directory / "landing").glob("*.csv"))
        runner.run(
            PreprocessJob(
                batch_id=0,
                files={number: path.as_uri() for number, path in enumerate(files, start=1)},
                trusted_url=(directory / "trusted").as_uri(),
                rejected_url=(directory / "rejected").as_uri(),
            )
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def select_runner(settings: Settings) -> SparkRunner:
    """Return the runner the settings ask for: the stack's Spark Connect server when it
    answers, else spark-submit (which needs nothing running)."""
    if settings.spark_runner is SparkRunnerMode.CONNECT:
        from tripflow.services import spark_connect

        url = spark_connect.url(settings)
        if spark_connect.version(url) is not None:
            return ConnectRunner(url)
    return SubmitRunner(settings)


def job_application() -> str:
    """Return the path of the Spark job's module, as spark-submit takes it."""
    from tripflow.spark import preprocess

    return str(Path(preprocess.__file__))


def job_arguments(job: PreprocessJob) -> list[str]:
    """Return the Spark job's own command-line arguments (the master is spark-submit's)."""
    arguments = [
        "--batch-id",
        str(job.batch_id),
        "--trusted",
        job.trusted_url,
        "--rejected",
        job.rejected_url,
    ]
    for file_id, url in sorted(job.files.items()):
        arguments += ["--file", f"{file_id}={url}"]
    arguments += [
        "--earliest",
        job.window.earliest.isoformat(),
        "--latest",
        job.window.latest.isoformat(),
    ]
    return arguments


def rejected_dir(batch_id: int, attempt: str | None = None) -> str:
    """Return the lake directory of a batch's rejected rows as one run of the job wrote them."""
    directory = f"{REJECTED}/batch={batch_id}"
    return f"{directory}/attempt={attempt}" if attempt else directory


def new_attempt() -> str:
    """Name a new run of a batch's Spark job (its output directories' last part)."""
    return uuid.uuid4().hex[:12]


def read_reports(lake: Lake, batch_id: int, attempt: str | None = None) -> list[dict[str, Any]]:
    """Read the per-file counts one run of the Spark job wrote beside its trusted Parquet."""
    reports = []
    for path in lake.glob(f"{trusted_dir(batch_id, attempt)}/_report/*.json"):
        with lake.open(path, "rt") as handle:
            reports += [json.loads(line) for line in handle if line.strip()]
    return reports


def build_job(
    conn: psycopg.Connection[Any],
    lake: Lake,
    batch_id: int,
    window: TripWindow = DEFAULT_WINDOW,
    attempt: str | None = None,
) -> PreprocessJob:
    """Describe one run of a batch's Spark job: its files, the output directories of the
    run `attempt` and the trip window."""
    from tripflow.spark.preprocess import PreprocessJob

    batch = ingestions.get_batch(conn, batch_id)
    return PreprocessJob(
        batch_id=batch_id,
        files={item.file_id: lake.uri(item.landing_path) for item in batch.files},
        trusted_url=lake.uri(trusted_dir(batch_id, attempt)),
        rejected_url=lake.uri(rejected_dir(batch_id, attempt)),
        window=window,
        hadoop_conf=lake.spark_conf(),
    )


def record_spark_results(
    conn: psycopg.Connection[Any], lake: Lake, batch_id: int, attempt: str | None = None
) -> None:
    """Record the counts one run of the Spark job reported for a batch (its output becomes
    the batch's) and mark the batch processed."""
    expected = {item.file_id for item in ingestions.get_batch(conn, batch_id).files}
    reports = read_reports(lake, batch_id, attempt)
    missing = expected - {report["file_id"] for report in reports}
    if missing:
        raise SparkJobError(f"Spark job for batch {batch_id} reported no counts for {missing}")
    ingestions.record_reports(conn, batch_id, reports, attempt)


def process_batch(
    conn: psycopg.Connection[Any],
    lake: Lake,
    runner: SparkRunner,
    batch_id: int,
    window: TripWindow = DEFAULT_WINDOW,
) -> None:
    """Run the Spark job over the batch's files, in directories of this run's own, and
    record its counts."""
    attempt = new_attempt()
    runner.run(build_job(conn, lake, batch_id, window, attempt))
    record_spark_results(conn, lake, batch_id, attempt)


def batch_trusted_dir(conn: psycopg.Connection[Any], batch_id: int) -> str:
    """Return the trusted Parquet directory of the Spark run recorded for a batch."""
    return trusted_dir(batch_id, ingestions.get_batch(conn, batch_id).spark_attempt)


def _move_files(conn: psycopg.Connection[Any], lake: Lake, batch_id: int, area: str) -> None:
    """Move the batch's files still in the landing dir to <area>/<batch>/."""
    for item in ingestions.get_batch(conn, batch_id).files:
        if item.processed_path:
            continue
        target = posixpath.join(area, str(batch_id), item.name)
        if not lake.exists(item.landing_path) and not lake.exists(target):
            # Deleted from the landing dir after the claim: nothing to move, and a batch set
            # aside must not fail on it (it would block newer files for good).
            log.warning("batch %s: %s is gone from the lake", batch_id, lake.uri(item.landing_path))
            continue
        lake.move(item.landing_path, target)
        ingestions.record_archived(conn, item.file_id, target)


def archive_batch(conn: psycopg.Connection[Any], lake: Lake, batch_id: int) -> None:
    """Move the batch's files out of the landing dir into processed/<batch>/, and drop the
    output of Spark runs that were not recorded (tries killed or failed)."""
    _move_files(conn, lake, batch_id, PROCESSED)
    with conn.transaction():
        ingestions.set_status(conn, batch_id, Status.DONE)
    drop_unrecorded_runs(lake, batch_id, ingestions.get_batch(conn, batch_id).spark_attempt)


def drop_unrecorded_runs(lake: Lake, batch_id: int, recorded: str | None) -> None:
    """Delete the trusted and rejected directories of a batch's Spark runs other than the
    recorded one. Best effort: a run still writing may put some back, which is harmless
    (nothing reads an unrecorded run) and is logged."""
    for directory in (trusted_dir(batch_id), rejected_dir(batch_id)):
        for found in lake.glob(f"{directory}/attempt=*"):
            if posixpath.basename(found) == f"attempt={recorded}":
                continue
            try:
                lake.remove_tree(found)
            except OSError as error:
                log.warning("batch %s: could not delete %s (%s)", batch_id, found, error)


def fail_batch(
    conn: psycopg.Connection[Any], lake: Lake, batch_id: int, error: str, max_attempts: int
) -> None:
    """Record a failed attempt; after `max_attempts`, set the batch aside as failed and move
    its files from the landing dir to failed/<batch>/, so it stops blocking new files."""
    if ingestions.record_failure(conn, batch_id, error) < max_attempts:
        return
    _move_files(conn, lake, batch_id, FAILED)
    with conn.transaction():
        # Rows it staged would otherwise stay in staging for good (10M of them, 1.3 GB,
        # when a publish ran out of disk in the 100M run); `tripflow retry` stages anew.
        clear_staging(conn, batch_id)
        ingestions.set_aside(conn, batch_id)


# The step a retried batch resumes from, by the step it had finished when set aside: its
# staged rows were cleared then, so a batch that failed at publish is staged again (from the
# trusted Parquet, without Spark).
_RESUME_FROM = {
    Status.CLAIMED: Status.CLAIMED,
    Status.PROCESSED: Status.PROCESSED,
    Status.STAGED: Status.PROCESSED,
    Status.PUBLISHED: Status.PUBLISHED,
}


def requeue_failed(conn: psycopg.Connection[Any], lake: Lake, batch_id: int) -> Status:
    """Put a batch set aside as failed back in line at the last step it finished (Spark's
    output is reused when it is still in the lake), its files back in the landing dir;
    return that step. The next ingest, or the DAG, takes it from there."""
    resume_from = _RESUME_FROM[ingestions.stopped_at(conn, batch_id)]
    conn.commit()
    attempt = ingestions.get_batch(conn, batch_id).spark_attempt
    if resume_from is Status.PROCESSED and not read_reports(lake, batch_id, attempt):
        resume_from = Status.CLAIMED
    batch = ingestions.get_batch(conn, batch_id)
    moves = []
    for item in batch.files:
        if not item.processed_path or not lake.exists(item.processed_path):
            if resume_from is Status.CLAIMED and not lake.exists(item.landing_path):
                raise FileNotFoundError(
                    f"{lake.uri(item.landing_path)} is neither in the landing dir nor at "
                    f"{item.processed_path}: batch {batch_id} cannot run Spark again"
                )
            continue
        if lake.exists(item.landing_path):
            raise FileExistsError(
                f"{lake.uri(item.landing_path)} exists already; move it away first"
            )
        moves.append(item)
    with conn.transaction():
        ingestions.resume(conn, batch_id, resume_from, [item.file_id for item in moves])
        # Moved inside the transaction: if a move fails, the batch stays failed and the
        # files already moved are claimed as new ones (their trips are never stored twice).
        for item in moves:
            assert item.processed_path is not None
            lake.move(item.processed_path, item.landing_path)
    return resume_from


def run_batch(
    conn: psycopg.Connection[Any],
    lake: Lake,
    runner: SparkRunner,
    batch_id: int,
    on_step: StepCallback | None = None,
    until: Status = Status.DONE,
    max_attempts: int = 3,
    serving: SegmentWriter | None = None,
    disk: DiskBudget | None = None,
    window: TripWindow = DEFAULT_WINDOW,
) -> None:
    """Take one batch from wherever it stopped to `until` (done by default); a batch
    already there or past it is left alone. A failing step is recorded on the batch (see
    `fail_batch`) and raised. `window` is the trip times the contract accepts."""
    steps: dict[Status, tuple[str, Callable[[], object]]] = {
        Status.CLAIMED: ("spark", lambda: process_batch(conn, lake, runner, batch_id, window)),
        Status.PROCESSED: (
            "staging",
            lambda: load_staging(conn, lake, batch_id, batch_trusted_dir(conn, batch_id)),
        ),
        Status.STAGED: ("publish", lambda: publish_batch(conn, batch_id, serving, disk)),
        Status.PUBLISHED: ("archive", lambda: archive_batch(conn, lake, batch_id)),
    }
    order = list(Status)
    while (status := ingestions.get_batch(conn, batch_id).status) != Status.FAILED and (
        order.index(status) < order.index(until)
    ):
        name, step = steps[status]
        if on_step:
            on_step(batch_id, name)
        try:
            step()
        except StagingLost:
            # The unlogged staging table lost its rows: load them again from the lake.
            with conn.transaction():
                ingestions.set_status(conn, batch_id, Status.PROCESSED)
        except Exception as error:
            fail_batch(conn, lake, batch_id, f"{name}: {error}", max_attempts)
            raise


def claim_or_resume(
    conn: psycopg.Connection[Any], lake: Lake, only: Collection[str] | None = None
) -> int | None:
    """Return the oldest unfinished batch, or else a new batch of the waiting files (or of
    those named), or None."""
    unfinished = ingestions.unfinished_batches(conn)
    if unfinished:
        return unfinished[0]
    batch = ingestions.claim_batch(conn, lake, only)
    return None if batch is None else batch.batch_id


def ingest(
    conn: psycopg.Connection[Any],
    lake: Lake,
    runner: SparkRunner,
    on_step: StepCallback | None = None,
    max_attempts: int = 3,
    serving: ServingCopy | None = None,
    disk: DiskBudget | None = None,
    window: TripWindow = DEFAULT_WINDOW,
    only: Collection[str] | None = None,
) -> list[int]:
    """Finish unfinished batches, then claim and run the files waiting now; return the
    batch ids touched. With `serving`, each publish writes its batch to the serving copy,
    and published batches the copy lacks (a crash, a copy removed) are written first. With
    `only`, only those landing paths are claimed (lake.settled_files tells complete ones)."""
    # Imported here: the serving copy's writer brings pyarrow.dataset (and pandas, 1.4 s),
    # which the DAG's claim task, a process of its own per batch, does not need.
    from tripflow.serving import maintenance

    writer = None
    if serving is not None:
        maintenance.sync(conn, serving)
        writer = maintenance.BatchWriter(serving, lake)
    touched = []
    for batch_id in ingestions.unfinished_batches(conn):
        run_batch(
            conn,
            lake,
            runner,
            batch_id,
            on_step,
            max_attempts=max_attempts,
            serving=writer,
            disk=disk,
            window=window,
        )
        touched.append(batch_id)
    batch = ingestions.claim_batch(conn, lake, only)
    if batch is not None:
        if on_step:
            on_step(batch.batch_id, "claimed")
        run_batch(
            conn,
            lake,
            runner,
            batch.batch_id,
            on_step,
            max_attempts=max_attempts,
            serving=writer,
            disk=disk,
            window=window,
        )
        touched.append(batch.batch_id)
    if serving is not None and touched:
        maintenance.compact(conn, serving)
    return touched
