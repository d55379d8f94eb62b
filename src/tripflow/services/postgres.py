"""The private PostgreSQL + PostGIS cluster tripflow runs under its home when no
TRIPFLOW_DATABASE_URL is given."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import secrets
import shutil
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from tripflow.config import machine_memory

if TYPE_CHECKING:
    from tripflow.config import Settings

SUPERUSER = "tripflow"
DATABASE = "tripflow"


def _shared_buffers_mb() -> int:
    """A quarter of the machine's memory, between 512 MB and 8 GB.

    With 512 MB, publishing 10M trips into a table of 20M spent 14+ minutes evicting and
    re-reading pages of the key index (random MD5 keys touch a random page per row); the
    indexes of 100M trips take about 12 GB."""
    return max(512, min(8192, machine_memory() // 4 // 2**20))


# Server settings for a single-machine analytics load; passed on the command line so they
# live in the project, not in someone's postgresql.conf.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    # TCP only: socket paths under a deep home would pass the 107-byte limit.
    "unix_socket_directories": "",
    "shared_buffers": f"{_shared_buffers_mb()}MB",
    "work_mem": "64MB",
    # Index builds and the GiST maintenance of bulk inserts.
    "maintenance_work_mem": "1GB",
    # Fewer checkpoints during bulk loads.
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
    "logging_collector": "off",
}


class PostgresError(RuntimeError):
    """The managed cluster could not be set up, started or stopped."""


# Where the cluster of a home the `postgres` user cannot reach lives instead (a clone in
# root's home, mode 0700 on Debian): PostgreSQL refuses to run as root, and its own user must
# reach its data directory.
OUTSIDE_HOME_ROOT = Path("/var/lib/tripflow")


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError as error:
        raise PostgresError("no `postgres` system user: run `make setup`") from error


def reachable_by(directory: Path, user: pwd.struct_passwd) -> bool:
    """Tell whether a user may search every existing directory down to this one."""
    groups = {user.pw_gid} | {
        group.gr_gid for group in grp.getgrall() if user.pw_name in group.gr_mem
    }
    for path in [*reversed(directory.parents), directory]:
        try:
            mode = path.stat()
        except FileNotFoundError:
            # What does not exist yet is made by root with the default, searchable mode.
            return True
        if mode.st_uid == user.pw_uid:
            allowed = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid in groups:
            allowed = mode.st_mode & stat.S_IXGRP
        else:
            allowed = mode.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def cluster_directory(home: Path) -> Path:
    """Return where the managed cluster of a home lives: `<home>/postgres`, or, when tripflow
    runs as root and the `postgres` user cannot reach the home, a directory of its own under
    /var/lib/tripflow (the first choice made for a home sticks)."""
    inside = home / "postgres"
    if os.geteuid() != 0 or (inside / "data" / "PG_VERSION").exists():
        return inside
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    outside = OUTSIDE_HOME_ROOT / f"{home.parent.name or 'root'}-{home.name}-{digest}"
    if (outside / "data" / "PG_VERSION").exists():
        return outside
    try:
        user = _postgres_user()
    except PostgresError:
        return inside
    return inside if reachable_by(home, user) else outside


def find_bindir() -> Path:
    """Return the directory of the newest installed PostgreSQL server binaries."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresError(
        "PostgreSQL server binaries not found: run `make setup` "
        "(it installs postgresql-15-postgis-3), or set TRIPFLOW_DATABASE_URL"
    )


class ManagedPostgres:
    """A PostgreSQL cluster under `<home>/postgres`, listening on loopback only."""

    def __init__(self, settings: Settings) -> None:
        self.directory = settings.managed_database_dir
        # Outside the home when the `postgres` user cannot reach it (cluster_directory).
        self.outside_home = not self.directory.is_relative_to(settings.home_dir)
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.password_file = self.directory / "password"
        self.port = settings.database_port

    def url(self, database: str = DATABASE) -> str:
        """Return the connection URL of a database of this cluster."""
        password = self.password_file.read_text().strip() if self.password_file.exists() else ""
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{database}"

    @property
    def initialized(self) -> bool:
        """Tell whether initdb has run."""
        return (self.data / "PG_VERSION").exists()

    def _as_owner(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        # PostgreSQL refuses to run as root: run its tools as the `postgres` system user.
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def _prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        owner = _postgres_user()
        if not reachable_by(self.directory.parent, owner):
            raise PostgresError(
                f"the `postgres` user cannot reach {self.directory}: choose a TRIPFLOW_HOME "
                "elsewhere or let other users search its parent directories (chmod o+x)"
            )
        os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        for path in self.directory.iterdir():
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def init(self) -> None:
        """Create the cluster (initdb) with a random password for the superuser."""
        if self.initialized:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.password_file.chmod(0o600)
        self._prepare_directory()
        result = self._as_owner(
            [
                str(find_bindir() / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(self.password_file),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-locale",
            ]
        )
        if result.returncode != 0:
            raise PostgresError(f"initdb failed:\n{result.stderr.strip()}")

    def running(self) -> bool:
        """Tell whether the cluster's server is up."""
        if not self.initialized:
            return False
        result = self._as_owner([str(find_bindir() / "pg_ctl"), "status", "-D", str(self.data)])
        return result.returncode == 0

    def start(self) -> None:
        """Initialise if needed, start the server and create the `tripflow` database."""
        self.init()
        if not self.running():
            options = " ".join(
                f"-c {name}={value!r}" if value == "" else f"-c {name}={value}"
                for name, value in {**SERVER_SETTINGS, "port": str(self.port)}.items()
            )
            self._prepare_directory()
            result = self._as_owner(
                [
                    str(find_bindir() / "pg_ctl"),
                    "start",
                    "--wait",
                    "--timeout",
                    "60",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                ]
            )
            if result.returncode != 0:
                tail = self.log.read_text().strip().splitlines()[-5:] if self.log.exists() else []
                raise PostgresError(
                    f"PostgreSQL did not start on port {self.port}: {result.stderr.strip()}\n"
                    + "\n".join(tail)
                )
        self.create_database(DATABASE)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database if it does not exist; return its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if template:
                    statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
                conn.execute(statement)
        return self.url(name)

    def remove(self) -> bool:
        """Stop the server and delete the cluster's directory; tell whether there was one."""
        if not self.directory.exists():
            return False
        self.stop()
        shutil.rmtree(self.directory)
        return True

    def stop(self) -> None:
        """Stop the server if it runs."""
        if not self.running():
            return
        result = self._as_owner(
            [str(find_bindir() / "pg_ctl"), "stop", "--wait", "-m", "fast", "-D", str(self.data)]
        )
        if result.returncode != 0:
            raise PostgresError(f"pg_ctl stop failed: {result.stderr.strip()}")
