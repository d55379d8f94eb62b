"""The `tripflow` command."""

from __future__ import annotations

import json
import os
import posixpath
import time
from contextlib import ExitStack, closing
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tripflow.config import Settings
from tripflow.lake import LANDING, open_lake, settled_files
from tripflow.services import stack
from tripflow.services.postgres import ManagedPostgres, PostgresError
from tripflow.services.supervisor import ServiceError
from tripflow.warehouse.ingestions import CHANNEL, BatchFollower

app = typer.Typer(
    help="tripflow: trip files -> Spark -> PostGIS -> API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The managed PostgreSQL cluster.", no_args_is_help=True)
app.add_typer(db_app, name="db")
serving_app = typer.Typer(
    help="The serving copy DuckDB answers weekly averages from.", no_args_is_help=True
)
app.add_typer(serving_app, name="serving")
hdfs_app = typer.Typer(
    help="The managed single-node HDFS (used when TRIPFLOW_LAKE_URL is hdfs://127.0.0.1:PORT).",
    no_args_is_help=True,
)
app.add_typer(hdfs_app, name="hdfs")
console = Console(soft_wrap=True)
errors = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error for the user and return the exit to raise."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def ensure_database(settings: Settings) -> str:
    """Start the managed cluster if it is ours, apply migrations; return the URL."""
    from tripflow.warehouse.database import migrate

    if settings.manages_database:
        cluster = ManagedPostgres(settings)
        if cluster.outside_home and not cluster.initialized:
            console.print(
                f"the `postgres` user cannot reach {settings.home_dir}: the managed "
                f"PostgreSQL keeps its data in {cluster.directory} (`tripflow db remove` "
                "deletes it)",
                highlight=False,
            )
        try:
            cluster.start()
        except PostgresError as error:
            raise fail(str(error)) from error
    url = settings.database_dsn
    try:
        migrate(url)
    except Exception as error:
        raise fail(f"cannot migrate the database: {error}") from error
    return url


def ensure_api_login(settings: Settings) -> None:
    """Fail clearly, before the API starts, when its database role cannot log in."""
    from tripflow.warehouse import roles

    try:
        roles.check_login(settings.api_database_dsn)
    except roles.RoleError as error:
        raise fail(str(error)) from error


@app.command("add-file")
def add_file(
    paths: Annotated[list[Path], typer.Argument(help="CSV files to put in the landing dir.")],
    wait: Annotated[
        bool,
        typer.Option(
            help="Follow the files through the DAG (pushed by the database) until loaded."
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --wait: print the batches as JSON.")
    ] = False,
) -> None:
    """Put files into the lake's landing dir atomically (written as _COPYING_, then renamed)."""
    settings = Settings()
    lake = open_lake(settings)
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise fail(", ".join(f"{path}: no such file" for path in missing))
    with ExitStack() as stack:
        follower = stack.enter_context(BatchFollower(settings.database_dsn)) if wait else None
        added = []
        for path in paths:
            try:
                added.append(lake.put(path, LANDING))
            except FileExistsError as error:
                raise fail(
                    f"{path.name} is already waiting in the landing dir ({lake.uri(LANDING)}); "
                    "it will be ingested as it is"
                ) from error
            # With --json, stdout carries only the JSON.
            (errors if as_json else console).print(
                f"added {path} -> {lake.uri(added[-1])}", highlight=False
            )
        if follower is None:
            return
        try:
            summaries = follower.follow(added, timeout, on_event=None if as_json else print_event)
        except TimeoutError as error:
            raise fail(str(error)) from error
    if as_json:
        print(json.dumps(summaries, default=str, indent=2))
    else:
        for summary in summaries:
            print_summary(summary)
    _fail_on_rejected_files(summaries)


def print_event(event: dict[str, Any]) -> None:
    """Print one ingestion status change as it is pushed."""
    counts = ""
    if event.get("rows_read") is not None:
        counts = (
            f" (read {event['rows_read']}, loaded {event['rows_loaded']}, "
            f"rejected {event['rows_rejected']}, duplicate {event['rows_duplicate']})"
        )
    error = f" [red]error: {event['error']}[/]" if event.get("error") else ""
    console.print(f"batch {event['batch_id']}: {event['status']}{counts}{error}", highlight=False)


def _fail_on_rejected_files(summaries: list[dict[str, Any]]) -> None:
    rejected = [f for s in summaries for f in s["files"] if f["status"] == "rejected"]
    if rejected:
        raise fail(
            f"{len(rejected)} file(s) rejected whole: "
            + "; ".join(f"{f['name']}: {f['error']}" for f in rejected)
        )


@app.command()
def watch() -> None:
    """Print every ingestion status change as the database pushes it (Ctrl-C to stop)."""
    settings = Settings()
    console.print(f"listening on {CHANNEL} ...")
    with BatchFollower(settings.database_dsn) as follower:
        try:
            for event in follower.events():
                print_event(event)
        except KeyboardInterrupt:
            pass


@app.command()
def ingest(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Claim the files in the landing dir and run them through Spark, staging and publish."""
    from tripflow import pipeline
    from tripflow.serving.copy import ServingCopy
    from tripflow.warehouse.database import connect
    from tripflow.warehouse.ingestions import batch_summary
    from tripflow.warehouse.publish import DiskBudget

    settings = Settings()
    url = ensure_database(settings)
    lake = open_lake(settings)
    # The stack's warm Spark Connect server if it answers; otherwise spark-submit.
    runner = pipeline.select_runner(settings)
    labels = {
        "claimed": "claimed files",
        "spark": "Spark: validating and writing Parquet",
        "staging": "loading staging_tripdata (COPY)",
        "publish": "publishing into tripdata",
        "archive": "moving files to processed/",
    }
    # A file still being written straight into the landing dir must not be claimed half
    # written: only files whose size held over one sensor poll are, as the DAG's sensor does.
    settled, growing = settled_files(lake, LANDING, settings.sensor_poll_seconds)
    for path in growing:
        errors.print(
            f"left {posixpath.basename(path)} in the landing dir: its size changed within "
            f"{settings.sensor_poll_seconds:g} s (still being written?); run `tripflow ingest` "
            "again once it is complete",
            highlight=False,
        )
    with closing(connect(url)) as conn:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=errors,
            transient=False,
        ) as progress:
            current: dict[str, Any] = {}

            def on_step(batch_id: int, step: str) -> None:
                if "task" in current:
                    progress.update(current["task"], completed=1, total=1)
                current["task"] = progress.add_task(
                    f"batch {batch_id}: {labels.get(step, step)}", total=None
                )

            try:
                batch_ids = pipeline.ingest(
                    conn,
                    lake,
                    runner,
                    on_step,
                    max_attempts=settings.max_batch_attempts,
                    serving=ServingCopy.from_settings(settings),
                    disk=DiskBudget.from_settings(settings),
                    window=settings.trip_window,
                    only=settled,
                )
            except Exception as error:
                raise fail(
                    f"ingestion failed: {error}\nThe batch keeps its error (`tripflow status`); "
                    f"after {settings.max_batch_attempts} failed attempts it is set aside as "
                    "failed and its files moved to data/failed/ (`tripflow retry BATCH`). "
                    "Run `tripflow ingest` again to retry."
                ) from error
            finally:
                if "task" in current:
                    progress.update(current["task"], completed=1, total=1)
        summaries = [batch_summary(conn, batch_id) for batch_id in batch_ids]
    if as_json:
        print(json.dumps(summaries, default=str, indent=2))
    elif not summaries:
        console.print(f"nothing to ingest: no files waiting in {lake.uri(LANDING)}")
    for summary in summaries:
        if not as_json:
            print_summary(summary)
    _fail_on_rejected_files(summaries)


def print_summary(summary: dict[str, Any]) -> None:
    """Print one batch's counts as a table."""
    table = Table(title=f"batch {summary['batch_id']}: {summary['status']}")
    for column in ("file", "status", "read", "loaded", "rejected", "duplicate"):
        table.add_column(column, justify="left" if column in ("file", "status") else "right")
    for item in summary["files"]:
        note = (
            f" (same content as file {item['same_as_file_id']})" if item["same_as_file_id"] else ""
        )
        table.add_row(
            item["name"] + note,
            item["status"],
            *(
                str(item[key] or 0)
                for key in ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")
            ),
        )
    table.add_row(
        "total",
        "",
        *(
            str(summary[key] or 0)
            for key in ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")
        ),
        style="bold",
    )
    console.print(table)


@app.command()
def retry(batch_id: Annotated[int, typer.Argument(help="A batch set aside as failed.")]) -> None:
    """Resume a failed batch from the last step it finished (Spark is not run again when its
    output is still in the lake), then ingest as `tripflow ingest` does; with the stack up,
    the DAG takes it instead."""
    from tripflow import pipeline
    from tripflow.services.stack import airflow_healthy
    from tripflow.warehouse.database import connect

    settings = Settings()
    lake = open_lake(settings)
    with closing(connect(ensure_database(settings))) as conn:
        try:
            resumed = pipeline.requeue_failed(conn, lake, batch_id)
        except (LookupError, ValueError, FileExistsError, FileNotFoundError) as error:
            raise fail(str(error)) from error
    console.print(f"batch {batch_id} resumes after step {resumed}", highlight=False)
    if airflow_healthy(settings):
        console.print("Airflow is up: the DAG takes the batch when its sensor next looks")
        return
    ingest(as_json=False)


@app.command()
def migrate() -> None:
    """Apply the database migrations not yet applied."""
    ensure_database(Settings())
    console.print("database schema is up to date")


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="Port (default TRIPFLOW_API_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default TRIPFLOW_API_HOST).")] = None,
) -> None:
    """Serve the API with gunicorn in the foreground (`tripflow up` runs it in the background)."""
    settings = Settings()
    ensure_database(settings)
    ensure_api_login(settings)
    if port:
        settings.api_port = port
    if host:
        settings.api_host = host
    command = stack.programs(settings, with_airflow=False)["api"]
    console.print(f"API on http://{settings.api_host}:{settings.api_port}/", highlight=False)
    os.execv(command[0], command)


@app.command()
def up(
    airflow: Annotated[
        bool, typer.Option(help="Start Airflow too (--no-airflow: database and API only).")
    ] = True,
) -> None:
    """Start the local stack: PostgreSQL, Airflow (api-server, scheduler, dag-processor,
    triggerer), the API and a Spark Connect server; return when all answer their health
    checks."""
    settings = Settings()
    ensure_database(settings)
    ensure_api_login(settings)
    with errors.status("starting the stack (Airflow takes about a minute the first time)..."):
        try:
            took = stack.up(settings, with_airflow=airflow)
        except ServiceError as error:
            raise fail(f"{error}; logs in {stack.log_directory(settings)}") from error
    console.print(f"API:      http://{settings.api_host}:{settings.api_port}/", highlight=False)
    if airflow:
        console.print(
            f"Airflow:  http://127.0.0.1:{settings.airflow_port}/ "
            f"(login {settings.airflow_username} / {settings.airflow_password}; "
            "DAG tripdata-process is unpaused and listening)",
            highlight=False,
        )
    if stack.runs_spark_connect(settings):
        from tripflow.services import spark_connect

        console.print(f"Spark:    {spark_connect.url(settings)} (Spark Connect)", highlight=False)
    if settings.manages_spark_cluster:
        console.print(
            f"Cluster:  {settings.spark_master} ({settings.spark_workers} workers; UI "
            f"http://127.0.0.1:{settings.spark_master_webui_port}/)",
            highlight=False,
        )
    console.print(f"Lake:     {open_lake(settings).uri(LANDING)} (drop files here)")
    console.print(f"Logs:     {stack.log_directory(settings)}", highlight=False)
    ready = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in took.items())
    console.print(f"Ready:    {ready}", highlight=False)


@app.command()
def down() -> None:
    """Stop the whole local stack (supervised services, then the managed PostgreSQL)."""
    settings = Settings()
    names = {
        "services": "services",
        "spark": "Spark cluster",
        "s3": "S3 server",
        "kafka": "Kafka",
        "hdfs": "HDFS",
    }
    for stopped in stack.down(settings):
        console.print(f"{names.get(stopped, stopped)} stopped")
    if settings.manages_database:
        ManagedPostgres(settings).stop()
        console.print("database stopped")


@app.command()
def status() -> None:
    """Show each service of the stack, the serving copy and the latest ingestion batches."""
    from tripflow.serving.copy import ServingCopy
    from tripflow.serving.maintenance import published_batches
    from tripflow.warehouse.database import connect
    from tripflow.warehouse.queries import list_ingestions

    settings = Settings()
    table = Table(title="services")
    for column in ("service", "state", "pid", "memory MB", "detail"):
        table.add_column(column)
    states = stack.services(settings)
    for state in states:
        table.add_row(
            state.name,
            state.state,
            str(state.pid or ""),
            f"{state.memory_mb:.0f}" if state.memory_mb is not None else "",
            state.detail,
        )
    total = sum(state.memory_mb or 0 for state in states)
    table.add_row("total", "", "", f"{total:.0f}", "", style="bold")
    console.print(table)
    copy = ServingCopy.from_settings(settings)
    try:
        with closing(connect(settings.database_dsn)) as conn:
            batches = list_ingestions(conn, limit=5)
            published = published_batches(conn)
    except Exception as error:
        raise fail(f"database not reachable: {error}", code=3) from error
    in_use = copy.cover(published)
    if in_use is None:
        console.print(
            f"serving copy ({copy.directory}): lacks published batches, questions are answered "
            "from PostGIS until `tripflow serving sync`"
        )
    else:
        trips = sum(segment.rows for segment in in_use)
        console.print(
            f"serving copy ({copy.directory}): {len(published)} published batches, "
            f"{trips:,} trips in {len(in_use)} segments"
        )
    recent = Table(title="latest ingestion batches")
    for column in ("batch", "status", "files", "read", "loaded", "rejected", "duplicate", "error"):
        recent.add_column(column)
    for batch in batches:
        recent.add_row(
            str(batch["batch_id"]),
            batch["status"],
            ", ".join(item["name"] for item in batch["files"]),
            *(
                str(batch[key] if batch[key] is not None else "")
                for key in ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")
            ),
            batch["error"] or "",
        )
    console.print(recent)


@app.command()
def groups(
    region: Annotated[str | None, typer.Option(help="Only groups of this region.")] = None,
    datasource: Annotated[
        str | None, typer.Option(help="Count only trips of this datasource.")
    ] = None,
    resolution: Annotated[
        int | None,
        typer.Option(help="H3 resolution of both cells (default: the first kept one)."),
    ] = None,
    bucket: Annotated[
        int | None, typer.Option(help="Time-of-day bucket width in minutes (default 60).")
    ] = None,
    min_trips: Annotated[int, typer.Option(help="Only groups with this many trips.")] = 1,
    limit: Annotated[int, typer.Option(help="How many groups to print.")] = 10,
    offset: Annotated[int, typer.Option(help="Groups to skip first.")] = 0,
) -> None:
    """Print the largest groups of similar trips: same region, H3 cell of each end and time
    of day."""
    from tripflow.answers import GroupsUnavailable, Serving, trip_groups
    from tripflow.api.params import ParamError, parse_group_query
    from tripflow.warehouse.database import connect

    settings = Settings()
    serving = Serving.from_settings(settings)
    given = {
        "region": region,
        "datasource": datasource,
        "resolution": resolution,
        "bucket": bucket,
        "min_trips": min_trips,
        "limit": limit,
        "offset": offset,
    }
    try:
        query = parse_group_query(
            {name: [str(value)] for name, value in given.items() if value is not None},
            serving.copy.groups,
            settings.group_resolutions[0],
        )
    except ParamError as error:
        for item in error.invalid:
            errors.print(f"  --{item.name.replace('_', '-')}: {item.reason}", highlight=False)
        raise fail("invalid options", code=2) from None
    try:
        with closing(connect(ensure_database(settings))) as conn:
            answer = trip_groups(conn, query, serving=serving)
    except GroupsUnavailable as error:
        raise fail(str(error)) from None
    table = Table(
        title=f"similar trips: H3 resolution {query.resolution}, {query.bucket_minutes}-minute "
        f"buckets, {answer['total_groups']:,} groups of at least {query.min_trips} trips"
    )
    for column in ("#", "region", "origin cell", "destination cell", "time of day", "trips"):
        table.add_column(column, justify="right" if column in ("#", "trips") else "left")
    table.add_column("per week", justify="right")
    for rank, group in enumerate(answer["groups"], start=query.offset + 1):
        table.add_row(
            str(rank),
            group["region"],
            group["origin"]["cell"],
            group["destination"]["cell"],
            f"{group['time_of_day']['from']}-{group['time_of_day']['to']}",
            f"{group['trips']:,}",
            f"{group['weekly_average']:.3f}",
        )
    console.print(table)
    console.print(
        f"weekly averages over {answer['weeks']} weeks "
        f"({answer['first_week']} to {answer['last_week']}) of {answer['trips']:,} trips",
        highlight=False,
    )


@app.command()
def generate(
    rows: Annotated[int, typer.Option("--rows", help="Data rows to write in all.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for trips-00001.csv, ...")],
    files: Annotated[int, typer.Option(help="Files to spread the rows over.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed: the same arguments, the same bytes.")] = 0,
    invalid_rate: Annotated[
        float, typer.Option(help="Share of rows that break one contract rule each.")
    ] = 0.0,
    duplicate_rate: Annotated[
        float,
        typer.Option(
            help="Share of rows that repeat an earlier valid row exactly (with --order time, "
            "a row of the same file)."
        ),
    ] = 0.0,
    # The choices are tripflow.generate.Order's values, spelled out so that every other
    # command starts without importing numpy and pyarrow (a test keeps them equal).
    order: Annotated[
        Literal["spread", "time"],
        typer.Option(
            help="spread: every file's trips over the whole of 2018, so every batch touches "
            "every week (the worst case for loads); time: each file covers the span of days "
            "right after the previous file's, the way a live feed arrives."
        ),
    ] = "spread",
    start: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"],
            help="With --order time: where the first file's span begins.",
            show_default="2018-01-01",
        ),
    ] = None,
    days_per_file: Annotated[
        float | None,
        typer.Option(
            help="With --order time: days each file covers, fractions allowed (1: a daily "
            "feed, 0.5: twice a day); trips per day are then rows per file / days.",
            show_default="365 / files: the run covers one year, as --order spread does",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the summary as JSON: per-reason counts, the order, each file's span.",
        ),
    ] = False,
) -> None:
    """Write realistic trip CSV files (optionally with invalid and duplicate rows), spread over
    2018 or in time order."""
    # Imported here: numpy and pyarrow would slow down every other command's start.
    from tripflow.generate import Order, generate_trips

    try:
        summary = generate_trips(
            rows,
            out,
            files=files,
            seed=seed,
            invalid_rate=invalid_rate,
            duplicate_rate=duplicate_rate,
            order=Order(order),
            start=start,
            days_per_file=days_per_file,
        )
    except ValueError as error:
        raise fail(str(error)) from error
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        console.print(summary.describe(), highlight=False)


@serving_app.command("sync")
def serving_sync() -> None:
    """Write the published batches the copy lacks, from tripdata."""
    from tripflow.serving import maintenance
    from tripflow.serving.copy import ServingCopy
    from tripflow.warehouse.database import connect

    settings = Settings()
    copy = ServingCopy.from_settings(settings)
    with closing(connect(ensure_database(settings))) as conn:
        written = maintenance.sync(conn, copy)
    if written:
        console.print(f"serving copy: wrote {len(written)} batches into {copy.directory}")
    else:
        console.print(f"serving copy at {copy.directory} holds every published batch")


@serving_app.command("rebuild")
def serving_rebuild() -> None:
    """Write the whole copy again from tripdata (readers keep answering meanwhile)."""
    from tripflow.serving import maintenance
    from tripflow.serving.copy import ServingCopy
    from tripflow.warehouse.database import connect

    settings = Settings()
    copy = ServingCopy.from_settings(settings)
    started = time.perf_counter()
    with closing(connect(ensure_database(settings))) as conn:
        rows = maintenance.rebuild(conn, copy)
    console.print(
        f"serving copy rebuilt: {rows:,} trips in {copy.directory} "
        f"({time.perf_counter() - started:.1f} s)"
    )


@serving_app.command("check")
def serving_check() -> None:
    """Compare trips per (region, datasource, week) between the copy and tripdata; exit 1
    on any difference."""
    from tripflow.answers import Serving
    from tripflow.serving import maintenance
    from tripflow.warehouse.database import connect

    settings = Settings()
    serving = Serving.from_settings(settings)
    with closing(connect(ensure_database(settings))) as conn:
        result = maintenance.check(conn, serving.copy, serving.engine)
    if result.missing_batches:
        shown = ", ".join(str(batch) for batch in result.missing_batches[:10])
        raise fail(
            f"serving copy lacks {len(result.missing_batches)} of {result.published} "
            f"published batches ({shown}); `tripflow serving sync` writes them"
        )
    if result.differences:
        for region, datasource, week, copy_trips, table_trips in result.differences[:20]:
            errors.print(
                f"  {region} / {datasource} / week of {week}: "
                f"copy {copy_trips:,}, tripdata {table_trips:,}"
            )
        raise fail(
            f"serving copy differs from tripdata in {len(result.differences)} groups; "
            "`tripflow serving rebuild` writes it again"
        )
    console.print(
        f"serving copy equals tripdata: {result.published} published batches, "
        "same trips per region, datasource and week"
    )


@hdfs_app.command("start")
def hdfs_start() -> None:
    """Start the NameNode and the DataNode (formatted on first start)."""
    from tripflow.services.hdfs import HdfsError, ManagedHdfs

    cluster = ManagedHdfs(Settings())
    try:
        seconds = cluster.start()
    except HdfsError as error:
        raise fail(str(error)) from error
    console.print(
        f"HDFS up in {seconds:.1f} s: {cluster.url()} (WebHDFS {cluster.webhdfs_url()})",
        highlight=False,
    )


@hdfs_app.command("stop")
def hdfs_stop() -> None:
    """Stop the DataNode and the NameNode."""
    from tripflow.services.hdfs import ManagedHdfs

    ManagedHdfs(Settings()).stop()
    console.print("HDFS stopped")


@hdfs_app.command("status")
def hdfs_status() -> None:
    """Show the NameNode and the DataNode."""
    from tripflow.services.hdfs import ManagedHdfs

    states = ManagedHdfs(Settings()).status()
    for state in states:
        memory = f"{state.memory_mb:.0f} MB" if state.memory_mb is not None else ""
        console.print(f"{state.name:10s} {state.state:8s} {memory:>8s}  {state.detail}")
    if any(state.state != "RUNNING" for state in states):
        raise typer.Exit(3)


@db_app.command("start")
def db_start() -> None:
    """Start the managed PostgreSQL (initialised on first start) and apply migrations."""
    settings = Settings()
    if not settings.manages_database:
        raise fail("TRIPFLOW_DATABASE_URL is set: that server is not managed by tripflow")
    ensure_database(settings)
    cluster = ManagedPostgres(settings)
    console.print(
        f"PostgreSQL running on 127.0.0.1:{cluster.port}, data in {cluster.data}", highlight=False
    )


@db_app.command("stop")
def db_stop() -> None:
    """Stop the managed PostgreSQL."""
    ManagedPostgres(Settings()).stop()
    console.print("PostgreSQL stopped")


@db_app.command("remove")
def db_remove(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: every trip is deleted.")] = False,
) -> None:
    """Stop the managed PostgreSQL and delete its data, wherever it lives."""
    settings = Settings()
    if not settings.manages_database:
        raise fail("TRIPFLOW_DATABASE_URL is set: that server is not managed by tripflow")
    cluster = ManagedPostgres(settings)
    if not yes:
        raise fail(f"this deletes the database in {cluster.directory}: add --yes to confirm")
    try:
        removed = cluster.remove()
    except PostgresError as error:
        raise fail(str(error)) from error
    console.print(
        f"deleted {cluster.directory}" if removed else "no managed database to delete",
        highlight=False,
    )


@db_app.command("status")
def db_status() -> None:
    """Tell whether the database answers."""
    from tripflow.warehouse.database import applied_migrations

    settings = Settings()
    if settings.manages_database and not ManagedPostgres(settings).running():
        raise fail("managed PostgreSQL is not running (tripflow db start)", code=3)
    try:
        applied = applied_migrations(settings.database_dsn)
    except Exception as error:
        raise fail(f"database not reachable: {error}", code=3) from error
    console.print(f"database up; migrations applied: {', '.join(applied) or 'none'}")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (for psql)."""
    print(Settings().database_dsn)


def main() -> None:
    """Run the CLI."""
    app()
