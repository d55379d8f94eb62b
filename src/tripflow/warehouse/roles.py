"""Database roles: the owner loads, the API reads, Airflow keeps its own database.

The pipeline connects as the owner (the URL in TRIPFLOW_DATABASE_URL, or the managed
cluster's superuser). The API connects as `tripflow_api`, a login role whose only rights
come from `tripflow_reader`: SELECT on the tables the API reads, nothing else. Airflow's
metadata database on the managed cluster belongs to `tripflow_airflow`, which can read no
trip.

A login role's password is derived from the owner's (an HMAC of the owner's password and
the role's name), so every process and every home that reaches the server with the owner's
URL agrees on it and no second secret is stored. Without an owner password (peer or
certificate login), tripflow creates no login role: set TRIPFLOW_API_DATABASE_URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger(__name__)

READER = "tripflow_reader"
API_LOGIN = "tripflow_api"
AIRFLOW_LOGIN = "tripflow_airflow"
# Everything the API's SQL reads (warehouse/sql and warehouse/queries.py); the parent of the
# partitioned `tripdata` is enough, PostgreSQL checks rights on the table a query names.
API_TABLES = (
    "tripdata",
    "trip_week_summary",
    "ingestion_batch",
    "ingestion_file",
    "ingestion_event",
)


class RoleError(RuntimeError):
    """A role tripflow needs could not be created or cannot log in."""


def derived_password(owner_url: str, role: str) -> str | None:
    """Return the password of a login role, derived from the owner's; None without one."""
    password = conninfo_to_dict(owner_url).get("password")
    if not password:
        return None
    digest = hmac.new(str(password).encode(), f"tripflow role {role}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def login_url(owner_url: str, role: str, database: str | None = None) -> str | None:
    """Return the owner's URL with a login role's name and password (and another database,
    if given); None when the owner's URL has no password to derive one from."""
    password = derived_password(owner_url, role)
    if password is None:
        return None
    if "://" not in owner_url:
        extra = {"dbname": database} if database else {}
        return make_conninfo(owner_url, user=role, password=password, **extra)
    parts = urlsplit(owner_url)
    host = parts.netloc.rpartition("@")[2]
    path = f"/{quote(database)}" if database else parts.path
    netloc = f"{quote(role)}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def _role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def _ensure_role(conn: psycopg.Connection[Any], role: str, options: sql.Composable) -> None:
    """Create a role, or give an existing one these options (a concurrent creator wins)."""
    name = sql.Identifier(role)
    if _role_exists(conn, role):
        conn.execute(sql.SQL("ALTER ROLE {} WITH ").format(name) + options)
        return
    try:
        conn.execute(sql.SQL("CREATE ROLE {} WITH ").format(name) + options)
    except errors.DuplicateObject:
        conn.execute(sql.SQL("ALTER ROLE {} WITH ").format(name) + options)


def _login_options(password: str) -> sql.Composable:
    # Utility statements take no bound parameters: the password goes in as a quoted literal.
    return sql.SQL(
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT PASSWORD {}"
    ).format(sql.Literal(password))


def grant_api_access(conn: psycopg.Connection[Any], owner_url: str) -> str | None:
    """Give the API's roles exactly what it reads in this database (idempotent); return why
    not, when the owner may not create roles or has no password to derive one from.

    `conn` is the owner's, in autocommit mode."""
    try:
        if not _role_exists(conn, READER):
            _ensure_role(conn, READER, sql.SQL("NOLOGIN"))
        tables = [
            sql.Identifier(table)
            for table in API_TABLES
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() != (None,)
        ]
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(READER)))
        if tables:
            conn.execute(
                sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(tables), sql.Identifier(READER)
                )
            )
        password = derived_password(owner_url, API_LOGIN)
        if password is None:
            return (
                "the database URL has no password to derive the API role's from: "
                f"set TRIPFLOW_API_DATABASE_URL to a role granted {READER}"
            )
        _ensure_role(conn, API_LOGIN, _login_options(password))
        api = sql.Identifier(API_LOGIN)
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READER), api))
        # A second lock besides the grants: the API's sessions start read-only.
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(api))
    except errors.InsufficientPrivilege as error:
        return f"the database owner may not create the API's role ({error})"
    _revoke_temporary_tables(conn)
    return None


def _revoke_temporary_tables(conn: psycopg.Connection[Any]) -> None:
    # PUBLIC may create temporary tables by default; the API needs none. The owner keeps the
    # right (owners hold every right on their database), so the pipeline is unaffected.
    database = conn.execute("SELECT current_database()").fetchone()
    assert database is not None
    statement = sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(
        sql.Identifier(database[0])
    )
    try:
        conn.execute(statement)
    except errors.InsufficientPrivilege:
        log.warning("not the owner of database %s: PUBLIC keeps TEMPORARY", database[0])


def check_login(url: str) -> None:
    """Raise RoleError when a role cannot log in with this URL."""
    try:
        with psycopg.connect(url, connect_timeout=10):
            pass
    except psycopg.OperationalError as error:
        user = conninfo_to_dict(url).get("user", "?")
        raise RoleError(
            f"the API's database role {user} cannot log in ({str(error).strip()}); run "
            f"`tripflow migrate` as a database user that may create roles, or set "
            f"TRIPFLOW_API_DATABASE_URL to a role granted {READER}"
        ) from error


def ensure_owned_database(owner_url: str, role: str, database: str) -> str:
    """Create a login role and a database it owns (or hand an existing database and its
    objects to it); return the role's URL of that database.

    For Airflow's metadata database: Airflow creates and migrates its own tables there, and
    its role reaches nothing else."""
    url = login_url(owner_url, role, database)
    password = derived_password(owner_url, role)
    if url is None or password is None:
        raise RoleError(f"the database URL has no password to derive {role}'s from")
    name, owner = sql.Identifier(database), sql.Identifier(role)
    with psycopg.connect(make_conninfo(owner_url, dbname="postgres"), autocommit=True) as conn:
        _ensure_role(conn, role, _login_options(password))
        found = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if found is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(name, owner))
            return url
        if found[0] == role:
            return url
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(name, owner))
    # A database made before the role: its tables still belong to the owner.
    with psycopg.connect(make_conninfo(owner_url, dbname=database), autocommit=True) as conn:
        _hand_over_objects(conn, role)
    return url


def _hand_over_objects(conn: psycopg.Connection[Any], role: str) -> None:
    owner = sql.Identifier(role)
    relations = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
        "AND pg_get_userbyid(c.relowner) <> %s",
        (role,),
    ).fetchall()
    kinds = {"S": "SEQUENCE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE"}
    for relation, kind in relations:
        statement = sql.SQL("ALTER {} {} OWNER TO {}").format(
            sql.SQL(kinds.get(kind, "TABLE")), sql.Identifier(relation), owner
        )
        try:
            conn.execute(statement)
        except (errors.FeatureNotSupported, errors.ObjectNotInPrerequisiteState):
            # A sequence owned by a column follows its table.
            continue
    types = conn.execute(
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public' AND t.typtype = 'e' AND pg_get_userbyid(t.typowner) <> %s",
        (role,),
    ).fetchall()
    for (type_name,) in types:
        conn.execute(sql.SQL("ALTER TYPE {} OWNER TO {}").format(sql.Identifier(type_name), owner))
