"""The `tripflow` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from tripflow.config import Settings
from tripflow.lake import LANDING, Lake
from tripflow.services.postgres import ManagedPostgres, PostgresError

app = typer.Typer(
    help="tripflow: trip files -> Spark -> PostGIS -> API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The managed PostgreSQL cluster.", no_args_is_help=True)
app.add_typer(db_app, name="db")
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
        try:
            ManagedPostgres(settings).start()
        except PostgresError as error:
            raise fail(str(error)) from error
    url = settings.database_dsn
    try:
        migrate(url)
    except Exception as error:
        raise fail(f"cannot migrate the database: {error}") from error
    return url


@app.command("add-file")
def add_file(
    paths: Annotated[list[Path], typer.Argument(help="CSV files to put in the landing dir.")],
) -> None:
    """Put files into the lake's landing dir atomically (written as _COPYING_, then renamed)."""
    lake = Lake(Settings().lake_root)
    code = 0
    for path in paths:
        if not path.is_file():
            errors.print(f"[bold red]error:[/] {path}: no such file", highlight=False)
            code = 1
            continue
        try:
            target = lake.put(path, LANDING)
        except FileExistsError:
            errors.print(
                f"[bold red]error:[/] {path.name} is already waiting in the landing dir "
                f"({lake.uri(LANDING)}); run `tripflow ingest` first",
                highlight=False,
            )
            code = 1
            continue
        console.print(f"added {path} -> {lake.uri(target)}", highlight=False)
    raise typer.Exit(code)


@app.command()
def ingest(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Claim the files in the landing dir and run them through Spark, staging and publish."""
    from tripflow import pipeline
    from tripflow.warehouse.database import connect
    from tripflow.warehouse.ingestions import batch_summary

    settings = Settings()
    url = ensure_database(settings)
    lake = Lake(settings.lake_root)
    runner = pipeline.SubmitRunner(settings)
    labels = {
        "claimed": "claimed files",
        "spark": "Spark: validating and writing Parquet",
        "staging": "loading staging_tripdata (COPY)",
        "publish": "publishing into tripdata",
        "archive": "moving files to processed/",
    }
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
                batch_ids = pipeline.ingest(conn, lake, runner, on_step)
            except Exception as error:
                raise fail(f"ingestion failed: {error}") from error
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
    rejected = [f for s in summaries for f in s["files"] if f["status"] == "rejected"]
    if rejected:
        raise fail(
            f"{len(rejected)} file(s) rejected whole: "
            + "; ".join(f"{f['name']}: {f['error']}" for f in rejected)
        )


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
def migrate() -> None:
    """Apply the database migrations not yet applied."""
    ensure_database(Settings())
    console.print("database schema is up to date")


def _pid_file(settings: Settings) -> Path:
    return settings.home_dir / "run" / "api.pid"


def _api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


@retry(
    stop=stop_after_delay(30),
    wait=wait_fixed(0.3),
    retry=retry_if_exception_type(OSError),
    reraise=True,
)
def _wait_healthy(url: str) -> None:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2):
            return
    except urllib.error.HTTPError as error:
        raise OSError(f"health answered {error.code}") from error


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="Port (default TRIPFLOW_API_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default TRIPFLOW_API_HOST).")] = None,
    detach: Annotated[
        bool, typer.Option(help="Run in the background; stop with `tripflow stop`.")
    ] = False,
) -> None:
    """Serve the API with gunicorn."""
    settings = Settings()
    ensure_database(settings)
    host = host or settings.api_host
    port = port or settings.api_port
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(settings.api_workers),
        "tripflow.api.wsgi:app",
    ]
    url = _api_url(host, port)
    if not detach:
        console.print(f"API on {url}/", highlight=False)
        os.execv(command[0], command)
    pid_file = _pid_file(settings)
    if _running_pid(pid_file):
        console.print(f"API already running on {url}/", highlight=False)
        return
    logs = settings.home_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    command += [
        "--daemon",
        "--pid",
        str(pid_file),
        "--error-logfile",
        str(logs / "api.log"),
        "--access-logfile",
        str(logs / "api-access.log"),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise fail(f"gunicorn did not start: {result.stderr.strip()}")
    try:
        _wait_healthy(url)
    except OSError as error:
        raise fail(f"API not healthy on {url} ({error}); see {logs / 'api.log'}") from error
    console.print(f"API on {url}/ (log {logs / 'api.log'})", highlight=False)


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


@app.command()
def stop() -> None:
    """Stop the background API and the managed database."""
    settings = Settings()
    pid = _running_pid(_pid_file(settings))
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if _running_pid(_pid_file(settings)) is None:
                break
            time.sleep(0.1)
        console.print("API stopped")
    if settings.manages_database:
        ManagedPostgres(settings).stop()
        console.print("database stopped")


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
