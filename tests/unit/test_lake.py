"""The lake interface on a local directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripflow.lake import LANDING, Lake, LakeFile


def test_put_writes_the_file_under_its_name_and_leaves_no_partial(tmp_path: Path) -> None:
    source = tmp_path / "trips.csv"
    source.write_text("a,b\n")
    lake = Lake((tmp_path / "lake").as_uri())

    target = lake.put(source, LANDING)

    assert target == f"{LANDING}/trips.csv"
    assert (tmp_path / "lake" / LANDING / "trips.csv").read_text() == "a,b\n"
    assert [p.name for p in (tmp_path / "lake" / LANDING).iterdir()] == ["trips.csv"]


def test_put_refuses_to_overwrite(tmp_path: Path) -> None:
    source = tmp_path / "trips.csv"
    source.write_text("a\n")
    lake = Lake((tmp_path / "lake").as_uri())
    lake.put(source, LANDING)
    with pytest.raises(FileExistsError):
        lake.put(source, LANDING)


def test_list_files_leaves_out_hidden_and_half_written_files(tmp_path: Path) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    for name in ("b.csv", "a.csv", "c.csv._COPYING_", "d.tmp", ".e.csv", "_SUCCESS"):
        lake.write_bytes(f"{LANDING}/{name}", b"x")
    lake.makedirs(f"{LANDING}/subdir")

    assert lake.list_files(LANDING) == [
        LakeFile(f"{LANDING}/a.csv", 1),
        LakeFile(f"{LANDING}/b.csv", 1),
    ]


def test_list_files_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert Lake((tmp_path / "none").as_uri()).list_files(LANDING) == []


def test_move_is_idempotent(tmp_path: Path) -> None:
    lake = Lake((tmp_path / "lake").as_uri())
    lake.write_bytes("in/a.csv", b"x")
    lake.move("in/a.csv", "out/1/a.csv")
    lake.move("in/a.csv", "out/1/a.csv")
    assert lake.exists("out/1/a.csv") and not lake.exists("in/a.csv")


def test_uri_names_the_full_location(tmp_path: Path) -> None:
    lake = Lake((tmp_path / "lake").as_uri() + "/")
    assert lake.uri("data/x.csv") == (tmp_path / "lake").as_uri() + "/data/x.csv"
