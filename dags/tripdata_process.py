"""The `tripdata-process` DAG: landing files -> Spark -> staging -> tripdata -> processed/.

Thin on purpose: the steps live in `tripflow.orchestration`; parsing this file connects to
nothing and reads one setting, TRIPFLOW_EVENTS_URL, which decides how a run starts (tasks
read the rest from TRIPFLOW_* when they run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, task

from tripflow.config import Settings
from tripflow.orchestration import tasks
from tripflow.orchestration.sensors import LandingFilesSensor
from tripflow.orchestration.watch import landing_asset
from tripflow.services.airflow import DAG_ID

DOC = """
### Trip files from the lake's landing dir into `tripdata`

One run takes one ingestion batch from the landing dir to `done`. How a run starts:

- **polling** (the default): `@continuous` with one active run starts the next run as soon
  as this one ends, and its first task waits for files.
- **bucket events** (`TRIPFLOW_EVENTS_URL`, e.g. `kafka://127.0.0.1:9092/tripflow-lake`):
  the S3 server sends each upload to a durable queue; the triggerer's AssetWatcher turns a
  message naming a new file in the landing dir into an event of the asset
  `tripflow_landing`, which starts a run at once. The run also starts every
  `TRIPFLOW_EVENTS_SWEEP_MINUTES`, for any file whose event never came. There is no
  wait_for_files task then.

1. **wait_for_files** (polling only) defers to the triggerer (no worker slot) until files in
   `data/raw/tripdata/` keep the same size over two polls (`TRIPFLOW_SENSOR_POLL_SECONDS`).
   Hidden, `_COPYING_` and `.tmp` files are ignored. After a day without files the run is
   skipped, and the next one starts waiting again.
2. **claim_batch** resumes the oldest unfinished batch, or claims the waiting files as a new
   batch (with events: every file waiting, whichever event started the run, so an event sent
   twice never loads a file twice); with neither, the rest of the run is skipped.
3. **validate_with_spark** runs the preprocess job, unless the batch is past it (a resumed
   run): CSV to validated, de-duplicated Parquet in `trusted/`, bad rows with reasons in
   `rejected/`, then stores the job's per-file counts (batch -> `processed`). With
   `TRIPFLOW_SPARK_RUNNER=connect` (the default) on the stack's warm Spark Connect server
   (`spark_connect_default` connection), else, or when that server does not answer, with
   spark-submit (`spark_default` connection). Its result says which ran.
4. **publish_to_tripdata** copies the Parquet into `staging_tripdata` (-> `staged`), then
   merges it into the week partitions of `tripdata` with PostGIS points in one transaction
   (-> `published`): the trips are queryable from here.
5. **archive_files** moves the files to `data/processed/tripdata/<batch>/` (-> `done`).

Few tasks on purpose: each costs Airflow a process start and a scheduling round, which a
small file's time from landing to queryable is made of; the steps inside a task are still
recorded one by one on the batch (and pushed to listeners).

Each step checks the batch's status first, so retries and reruns are safe: no row is
loaded twice and no file is lost.
"""

SETTINGS = Settings()
if SETTINGS.events_url and SETTINGS.events_sweep_minutes:
    # A run per batch of bucket events, and a sweep now and then for events lost on the way.
    SCHEDULE: object = AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(
            f"*/{SETTINGS.events_sweep_minutes} * * * *", timezone="UTC"
        ),
        assets=[landing_asset(SETTINGS)],
    )
elif SETTINGS.events_url:
    SCHEDULE = [landing_asset(SETTINGS)]
else:
    SCHEDULE = "@continuous"

with DAG(
    dag_id=DAG_ID,
    description="Ingest trip files from the lake's landing dir into PostGIS",
    doc_md=DOC,
    schedule=SCHEDULE,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["tripflow"],
):
    if SETTINGS.events_url:
        # The run's events name files, but every waiting file is claimed.
        claimed = task(task_id="claim_batch", multiple_outputs=True)(tasks.claim)()
    else:
        waiting = LandingFilesSensor(
            task_id="wait_for_files",
            timeout=timedelta(days=1),
            # A quiet day is not a failure: skip the run and let the next one wait.
            soft_fail=True,
        )
        # Only the files the sensor saw stop growing are claimed.
        claimed = task(task_id="claim_batch", multiple_outputs=True)(tasks.claim)(waiting.output)
    batch_id = claimed["batch_id"]
    # Connect or spark-submit is decided when the task runs (from TRIPFLOW_SPARK_RUNNER).
    spark = task(
        task_id="validate_with_spark",
        # Each failed try counts on the batch, which is set aside after the last one.
        on_retry_callback=tasks.record_spark_failure,
        on_failure_callback=tasks.record_spark_failure,
    )(tasks.validate)(batch_id)
    published = task(task_id="publish_to_tripdata")(tasks.publish)(batch_id)
    archived = task(task_id="archive_files")(tasks.archive)(batch_id)

    spark >> published >> archived
