"""Settings: defaults, environment, and documentation."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tripflow.config import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_every_setting_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^(TRIPFLOW_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    declared = {f"TRIPFLOW_{name.upper()}" for name in Settings.model_fields}
    assert documented == declared


def test_env_example_shows_the_defaults() -> None:
    shown = dict(re.findall(r"^(TRIPFLOW_[A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    defaults = Settings(_env_file=None)
    for name, value in shown.items():
        default = getattr(defaults, name.removeprefix("TRIPFLOW_").lower())
        if isinstance(default, list):
            # Lists are written comma-separated.
            default = ",".join(str(item) for item in default)
        assert (str(default) if default is not None else "") == value, name


def test_lake_defaults_to_a_directory_under_the_home(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    assert settings.lake_root == (tmp_path / "lake").as_uri()


def test_reads_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIPFLOW_API_PORT", "6000")
    monkeypatch.setenv("TRIPFLOW_LAKE_URL", "hdfs://127.0.0.1:8020/")
    settings = Settings(_env_file=None)
    assert settings.api_port == 6000
    assert settings.lake_root == "hdfs://127.0.0.1:8020"


def test_an_external_database_url_turns_off_the_managed_cluster() -> None:
    settings = Settings(_env_file=None, database_url="postgresql://u:p@db:5432/trips")
    assert not settings.manages_database
    assert settings.database_dsn == "postgresql://u:p@db:5432/trips"


def test_spark_memory_defaults_to_a_sixth_of_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIPFLOW_SPARK_DRIVER_MEMORY", raising=False)
    total_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    chosen = Settings(_env_file=None).driver_memory
    assert re.fullmatch(r"\d+m", chosen), chosen
    mib = int(chosen[:-1])
    assert mib % 512 == 0
    assert 1024 <= mib <= 8192
    assert mib == 1024 or mib == 8192 or abs(mib - total_mib / 6) <= 256
    monkeypatch.setenv("TRIPFLOW_SPARK_DRIVER_MEMORY", "3g")
    assert Settings(_env_file=None).driver_memory == "3g"


def test_refuses_a_trip_window_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        Settings(_env_file=None, trip_earliest="2020-01-01", trip_latest="2019-01-01")


def test_settings_passed_through_the_environment_are_the_same(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chosen = Settings(
        _env_file=None, home=tmp_path, group_resolutions=[9, 6], group_minutes=30, api_port=6001
    )
    for name, value in chosen.environment().items():
        monkeypatch.setenv(name, value)
    passed = Settings(_env_file=None)
    # The lake and database URLs are passed resolved, so compare what the environment holds.
    assert passed.environment() == chosen.environment()
    assert (passed.group_resolutions, passed.group_minutes) == ([9, 6], 30)


def test_group_settings_name_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value, reason in [
        ("TRIPFLOW_GROUP_RESOLUTIONS", "8,16", "outside 0-15"),
        ("TRIPFLOW_GROUP_RESOLUTIONS", " , ", "at least one"),
        ("TRIPFLOW_GROUP_MINUTES", "7", "does not divide"),
    ]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=reason):
            Settings(_env_file=None)
        monkeypatch.delenv(name)


def test_one_s3_key_without_the_other_is_refused() -> None:
    with pytest.raises(ValueError, match="TRIPFLOW_S3_SECRET_KEY"):
        Settings(_env_file=None, s3_access_key="only-this")
