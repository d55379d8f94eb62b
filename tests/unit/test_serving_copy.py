"""The serving copy's manifests and the choice of segments, without any engine."""

from __future__ import annotations

import json
from pathlib import Path

from tripflow.serving.copy import FORMAT, ServingCopy


def write_manifest(directory: Path, name: str, batches: list[int], identity: str) -> None:
    content = {"format": FORMAT, "id": identity, "batches": batches, "rows": 0}
    (directory / f"{name}.json").write_text(json.dumps(content))


def test_cover_takes_exactly_the_published_batches_larger_segments_first(tmp_path: Path) -> None:
    write_manifest(tmp_path, "batch-1", [1], "a" * 32)
    write_manifest(tmp_path, "batch-2", [2], "b" * 32)
    write_manifest(tmp_path, "merge-x", [1, 2], "c" * 32)
    write_manifest(tmp_path, "batch-3", [3], "d" * 32)
    copy = ServingCopy(tmp_path)
    chosen = copy.cover([1, 2])
    assert chosen is not None
    assert [segment.name for segment in chosen] == ["merge-x"]
    # A batch the copy lacks: no cover; a segment of an unpublished batch is never taken.
    assert copy.cover([1, 2, 4]) is None
    three = copy.cover([3, 1, 2])
    assert three is not None
    assert sorted(segment.name for segment in three) == ["batch-3", "merge-x"]


def test_a_manifest_that_is_not_ours_is_ignored(tmp_path: Path) -> None:
    write_manifest(tmp_path, "batch-1", [1], "a" * 32)
    write_manifest(tmp_path, "evil", [2], "x; DROP TABLE trips; --")
    (tmp_path / "broken.json").write_text("{not json")
    copy = ServingCopy(tmp_path)
    assert [segment.name for segment in copy.segments()] == ["batch-1"]
    assert copy.cover([1, 2]) is None
