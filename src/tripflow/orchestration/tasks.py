"""The callables the `tripdata-process` DAG runs: each is an entry point that builds settings,
the warehouse connection and the lake, then calls one step of `tripflow.pipeline`.

Every step goes through the batch's status, so a retry or a rerun of any task resumes the
batch where it stopped and never loads a row twice."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from tripflow.config import Settings, SparkRunnerMode
from tripflow.lake import Lake, open_lake
from tripflow.warehouse.ingestions import Status

if TYPE_CHECKING:
    import psycopg

    from tripflow.spark.preprocess import PreprocessJob

# The DAG processor imports this module each time it parses the DAG file: the pipeline
# (psycopg, pyarrow, pandas: ~1.6 s) is imported inside the callables, when a task runs.

log = logging.getLogger(__name__)
# Airflow connections of the two ways to run the Spark job (`airflow_environment` makes
# both from the settings; either can be edited in Airflow to point at a cluster).
SUBMIT_CONN_ID = "spark_default"
CONNECT_CONN_ID = "spark_connect_default"


class SparkAlreadySubmitted:
    """A Spark runner for steps after `validate_with_spark`: it refuses to run the job."""

    def run(self, job: PreprocessJob) -> None:
        """Refuse: the DAG runs Spark in its own task, never inside a later step."""
        from tripflow.pipeline import SparkJobError

        raise SparkJobError(
            f"batch {job.batch_id} has no Spark results recorded yet; "
            "clear validate_with_spark to run them again"
        )


@contextmanager
def _entry_point() -> Iterator[tuple[Settings, psycopg.Connection[Any], Lake]]:
    settings = Settings()
    from tripflow.warehouse.database import connect

    with connect(settings.database_dsn) as conn:
        yield settings, conn, open_lake(settings)


def _log_step(batch_id: int, step: str) -> None:
    log.info("batch %d: %s", batch_id, step)


def spark_application() -> str:
    """Return the path of the Spark job's module without importing it (or PySpark)."""
    spec = importlib.util.find_spec("tripflow.spark.preprocess")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("tripflow.spark.preprocess")
    return spec.origin


def claim(ready: list[str] | None = None) -> dict[str, Any]:
    """Resume the oldest unfinished batch or claim the files the sensor saw complete as a new
    one; skip the rest of the run when there is neither."""
    from tripflow import pipeline
    from tripflow.warehouse import ingestions

    with _entry_point() as (_settings, conn, lake):
        batch_id = pipeline.claim_or_resume(conn, lake, ready)
        if batch_id is None:
            raise AirflowSkipException("no waiting files and no unfinished batch")
        batch = ingestions.get_batch(conn, batch_id)
    log.info("batch %d: %s, %d file(s)", batch_id, batch.status, len(batch.files))
    return {"batch_id": batch_id, "files": len(batch.files)}


def record_spark_failure(context: Any) -> None:
    """Record a failed try of the Spark task on its batch (the failure would otherwise stay
    in Airflow only, and the batch would be retried for ever)."""
    from tripflow import pipeline

    batch_id = context["ti"].xcom_pull(task_ids="claim_batch", key="batch_id")
    if batch_id is None:
        return
    error = context.get("exception") or "the Spark job failed"
    with _entry_point() as (settings, conn, lake):
        pipeline.fail_batch(
            conn, lake, int(batch_id), f"spark: {error}", settings.max_batch_attempts
        )


def validate(batch_id: int) -> dict[str, str]:
    """Run the batch's Spark job and record its per-file counts (batch -> processed); a
    batch already past `claimed` (a resumed run) needs neither.

    Each try writes into directories of its own (a new attempt): a try killed with its job
    still running (on the Connect server, or an orphaned spark-submit) can go on writing
    without touching the output the next try records.

    One task for both: each task costs Airflow a process start and a scheduling round,
    seconds that a small file's time from landing to queryable is made of. A failure is
    recorded on the batch by the task's failure callbacks."""
    from tripflow import pipeline
    from tripflow.warehouse import ingestions

    with _entry_point() as (settings, conn, lake):
        status = ingestions.get_batch(conn, batch_id).status
        attempt = pipeline.new_attempt()
        job = pipeline.build_job(conn, lake, batch_id, settings.trip_window, attempt)
    if status is not Status.CLAIMED:
        log.info("batch %d: %s, Spark results already recorded", batch_id, status)
        return {"runner": "none"}
    log.info("batch %d: Spark run %s writes %s", batch_id, attempt, job.trusted_url)
    ran = _run_spark_job(job, settings)
    with _entry_point() as (_settings, conn, lake):
        pipeline.record_spark_results(conn, lake, batch_id, attempt)
    return {**ran, "attempt": attempt}


def _run_spark_job(job: PreprocessJob, settings: Settings) -> dict[str, str]:
    """Run a batch's Spark job and return how it ran: on the Spark Connect server when
    TRIPFLOW_SPARK_RUNNER is connect and the server answers, else with spark-submit."""
    from tripflow import pipeline

    if settings.spark_runner is SparkRunnerMode.CONNECT:
        from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook

        from tripflow.services import spark_connect

        url = SparkConnectHook(CONNECT_CONN_ID).get_connection_url()
        if spark_connect.version(url) is not None:
            log.info("running the Spark job on the Spark Connect server %s", url)
            pipeline.ConnectRunner(url).run(job)
            return {"runner": "connect", "url": url}
        # The batch still gets through, only with a cold JVM; the server may be restarting.
        log.warning("no Spark Connect server answers at %s: using spark-submit", url)
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    from tripflow.spark.session import s3a_jars

    # The lake's Hadoop settings (an s3:// lake's endpoint and keys) and the S3A jars.
    properties = pipeline.write_spark_properties(job, settings) if job.hadoop_conf else None
    try:
        hook = SparkSubmitHook(
            conn_id=SUBMIT_CONN_ID,
            conf={"spark.ui.enabled": "false"},
            name="tripflow-preprocess",
            application_args=pipeline.job_arguments(job),
            jars=",".join(s3a_jars(settings.s3a_jars)) if job.hadoop_conf else None,
            properties_file=str(properties) if properties else None,
            executor_memory=settings.executor_memory,
        )
        hook.submit(spark_application())
    finally:
        if properties is not None:
            properties.unlink(missing_ok=True)
    return {"runner": "spark-submit"}


def _advance(batch_id: int, until: Status) -> None:
    from tripflow import pipeline
    from tripflow.serving import maintenance
    from tripflow.serving.copy import ServingCopy
    from tripflow.warehouse import ingestions
    from tripflow.warehouse.publish import DiskBudget

    with _entry_point() as (settings, conn, lake):
        copy = ServingCopy.from_settings(settings)
        if until is Status.PUBLISHED:
            # Published batches the copy lacks (a crash, a copy removed) are written first.
            maintenance.sync(conn, copy)
        pipeline.run_batch(
            conn,
            lake,
            SparkAlreadySubmitted(),
            batch_id,
            on_step=_log_step,
            until=until,
            max_attempts=settings.max_batch_attempts,
            serving=maintenance.BatchWriter(copy, lake),
            disk=DiskBudget.from_settings(settings),
            window=settings.trip_window,
        )
        batch = ingestions.get_batch(conn, batch_id)
    if batch.status is Status.FAILED:
        # Set aside after its last attempt: fail this run for good instead of retrying.
        raise AirflowFailException(f"batch {batch_id} was set aside as failed; see its error")


def publish(batch_id: int) -> None:
    """Copy the batch's validated Parquet into the staging table, then publish it into
    `tripdata` in one transaction (two steps recorded on the batch, one task)."""
    _advance(batch_id, Status.PUBLISHED)


def archive(batch_id: int) -> dict[str, Any]:
    """Move the batch's files to processed/, mark it done and return its summary."""
    from tripflow.serving import maintenance
    from tripflow.serving.copy import ServingCopy
    from tripflow.warehouse import ingestions

    _advance(batch_id, Status.DONE)
    with _entry_point() as (settings, conn, _lake):
        # Off the publish's path: merging segments never delays the data becoming visible.
        maintenance.compact(conn, ServingCopy.from_settings(settings))
        summary = ingestions.batch_summary(conn, batch_id)
    # Plain JSON values: timestamps as text, so the XCom is readable anywhere.
    result: dict[str, Any] = json.loads(ingestions.summary_json(summary))
    return result
