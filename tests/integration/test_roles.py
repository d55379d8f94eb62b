"""Least privilege: the API reads through a role that can write nothing, and Airflow's
metadata database belongs to a role that can read no trip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import free_port
from tests.integration.test_api import close_pool, load_sample
from tripflow.api import create_app, get_database
from tripflow.config import Settings
from tripflow.services import airflow
from tripflow.services.postgres import ManagedPostgres
from tripflow.warehouse import roles
from tripflow.warehouse.database import migrate

# Each is a write, or a way around the role's rights, that the API's connection must refuse.
WRITES = {
    "delete trips": "DELETE FROM tripdata",
    "update the summary": "UPDATE trip_week_summary SET trips = trips + 1",
    "add a batch": "INSERT INTO ingestion_batch (status, files) VALUES ('claimed', 1)",
    "empty staging": "TRUNCATE staging_tripdata",
    "read staging": "SELECT count(*) FROM staging_tripdata",
    "create a table": "CREATE TABLE intruder (id int)",
    "create a temporary table": "CREATE TEMPORARY TABLE intruder (id int)",
    "drop the trips": "DROP TABLE tripdata",
    "become the owner": "SET ROLE tripflow",
}


@pytest.fixture
def api_app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    """The API built as `serve` builds it: from settings alone, after `tripflow migrate`."""
    load_sample(database_url)
    migrate(database_url)
    settings = Settings(_env_file=None, home=tmp_path / "home", database_url=database_url)
    application = create_app(settings)
    yield application
    close_pool(application)


def test_the_api_connects_as_a_role_that_can_read_but_not_write(api_app: Flask) -> None:
    with api_app.app_context(), get_database().connection() as conn:
        user, superuser = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or (None, None)
        assert (user, superuser) == (roles.API_LOGIN, False)
        assert conn.execute("SELECT count(*) FROM tripdata").fetchone() == (100,)
        conn.rollback()
        refused = {}
        for what, statement in WRITES.items():
            # The session's read-only default is only the first lock: lift it as an attacker
            # would, so the role's missing rights are what refuses.
            conn.execute("SET TRANSACTION READ WRITE")
            try:
                conn.execute(statement)
            except errors.InsufficientPrivilege:
                refused[what] = True
            else:
                refused[what] = False
            conn.rollback()
        assert refused == dict.fromkeys(WRITES, True)


def test_the_api_answers_every_question_through_its_own_role(api_app: Flask) -> None:
    client = api_app.test_client()
    for path in (
        "/health",
        "/regions",
        "/datasources",
        "/ingestions",
        "/weekly-average?bbox=14.2,49.9,14.7,50.2",
        "/weekly-average?region=Prague&match=origin",
    ):
        response = client.get(path)
        assert response.status_code == 200, (path, response.get_json())


def test_the_stack_api_connects_as_its_own_role(connect_stack: Settings) -> None:
    from tests.e2e.command import get

    status, _, _ = get(f"http://127.0.0.1:{connect_stack.api_port}/ingestions")
    assert status == 200
    owner = connect_stack.database_dsn
    database = conninfo_to_dict(owner)["dbname"]
    with psycopg.connect(owner) as conn:
        users = conn.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s AND pid <> "
            "pg_backend_pid() AND backend_type = 'client backend'",
            (database,),
        ).fetchall()
    assert users == [(roles.API_LOGIN,)]


def test_an_owner_url_without_password_leaves_the_api_on_it() -> None:
    owner = "postgresql://someone@db.example:5432/trips"
    assert roles.login_url(owner, roles.API_LOGIN) is None
    settings = Settings(_env_file=None, database_url=owner)
    assert settings.api_database_dsn == owner
    explicit = "postgresql://reader:secret@db.example:5432/trips"
    settings = Settings(_env_file=None, database_url=owner, api_database_url=explicit)
    assert settings.api_database_dsn == explicit


def test_a_login_role_password_derives_from_the_owners() -> None:
    first = roles.login_url("postgresql://owner:one@h:1/db", roles.API_LOGIN)
    again = roles.login_url("postgresql://owner:one@h:1/db", roles.API_LOGIN)
    other = roles.login_url("postgresql://owner:two@h:1/db", roles.API_LOGIN)
    airflow_url = roles.login_url("postgresql://owner:one@h:1/db", roles.AIRFLOW_LOGIN, "af")
    assert first == again and first != other
    assert first is not None and airflow_url is not None
    parts, airflow_parts = conninfo_to_dict(first), conninfo_to_dict(airflow_url)
    assert (parts["user"], parts["dbname"], parts["host"]) == (roles.API_LOGIN, "db", "h")
    assert (airflow_parts["user"], airflow_parts["dbname"]) == (roles.AIRFLOW_LOGIN, "af")
    assert parts["password"] != airflow_parts["password"]
    assert "one" not in parts["password"]
    keywords = roles.login_url("host=h port=1 dbname=db user=owner password=one", "r")
    assert keywords is not None and conninfo_to_dict(keywords)["user"] == "r"


def _is_superuser(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        # Airflow creates and alters its tables (airflow db migrate): these fail unless the
        # role owns the database and what was made before it.
        conn.execute("CREATE TABLE IF NOT EXISTS airflow_like (id serial PRIMARY KEY)")
        conn.execute("ALTER TABLE legacy ADD COLUMN IF NOT EXISTS note text")
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        return row.fetchone() == (True,)


def test_airflow_gets_a_database_of_its_own_role_that_reads_no_trip(
    postgres_cluster: ManagedPostgres, database_url: str
) -> None:
    owner = postgres_cluster.url()
    name = f"airflow_{free_port()}"
    # A metadata database from before the role: its tables belong to the owner.
    postgres_cluster.create_database(name)
    with psycopg.connect(make_conninfo(owner, dbname=name), autocommit=True) as conn:
        conn.execute("CREATE TABLE legacy (id serial PRIMARY KEY)")
    url = roles.ensure_owned_database(owner, roles.AIRFLOW_LOGIN, name)
    assert roles.ensure_owned_database(owner, roles.AIRFLOW_LOGIN, name) == url
    assert conninfo_to_dict(url)["user"] == roles.AIRFLOW_LOGIN
    assert not _is_superuser(url)
    warehouse = make_conninfo(
        url, dbname=conninfo_to_dict(database_url)["dbname"], user=roles.AIRFLOW_LOGIN
    )
    with psycopg.connect(warehouse) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM tripdata")
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def test_the_managed_stack_gives_airflow_its_own_role(test_home: Path) -> None:
    settings = Settings(_env_file=None, home=test_home / "airflow-role", database_port=1)
    settings.managed_database_dir.mkdir(parents=True)
    (settings.managed_database_dir / "password").write_text("secret\n")
    url = airflow.metadata_url(settings)
    assert url.startswith(f"postgresql+psycopg2://{roles.AIRFLOW_LOGIN}:")
    assert url.endswith("@127.0.0.1:1/airflow")
    external = Settings(_env_file=None, database_url="postgresql://o:p@h:1/tripflow")
    assert airflow.metadata_url(external) == "postgresql+psycopg2://o:p@h:1/airflow"
