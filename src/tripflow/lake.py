"""The lake: one small interface over any fsspec filesystem (file://, hdfs://, s3://)."""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec

LANDING = "data/raw/tripdata"
PROCESSED = "data/processed/tripdata"
TRUSTED = "data/trusted/tripdata"
REJECTED = "data/rejected/tripdata"

# Writers expose a file under one of these names until it is complete.
IN_FLIGHT_SUFFIXES = ("._COPYING_", ".tmp")


def is_in_flight(name: str) -> bool:
    """Tell whether a file name marks a hidden or half-written file."""
    return name.startswith((".", "_")) or name.endswith(IN_FLIGHT_SUFFIXES)


@dataclass(frozen=True)
class LakeFile:
    """A file in the lake: its path relative to the lake root, and its size."""

    path: str
    size: int

    @property
    def name(self) -> str:
        """Return the file's base name."""
        return posixpath.basename(self.path)


class Lake:
    """Files under a root URL; callers use paths relative to that root."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = root.rstrip("/") or "/"

    def full_path(self, path: str) -> str:
        """Return a path as the lake's filesystem (`self.fs`) names it."""
        return posixpath.join(self.root, path.lstrip("/"))

    def uri(self, path: str = "") -> str:
        """Return the full URL of a path, as Spark and other engines expect it."""
        return f"{self.url}/{path.lstrip('/')}" if path else self.url

    def exists(self, path: str) -> bool:
        """Tell whether a file or directory exists."""
        return bool(self.fs.exists(self.full_path(path)))

    def list_files(self, directory: str) -> list[LakeFile]:
        """List the complete files directly in a directory, sorted by name (hidden and
        half-written files left out); an absent directory is empty."""
        full = self.full_path(directory)
        if not self.fs.exists(full):
            return []
        found = []
        for info in self.fs.ls(full, detail=True):
            name = posixpath.basename(info["name"].rstrip("/"))
            if info["type"] != "file" or is_in_flight(name):
                continue
            found.append(LakeFile(posixpath.join(directory, name), int(info["size"])))
        return sorted(found, key=lambda item: item.path)

    def glob(self, pattern: str) -> list[str]:
        """Return the relative paths matching a glob pattern."""
        prefix = self.root.rstrip("/") + "/"
        return sorted(
            str(match)[len(prefix) :] if str(match).startswith(prefix) else str(match)
            for match in self.fs.glob(self.full_path(pattern))
        )

    @contextmanager
    def open(self, path: str, mode: str = "rb") -> Iterator[IO[Any]]:
        """Open a file of the lake."""
        with self.fs.open(self.full_path(path), mode) as handle:
            yield handle

    def makedirs(self, directory: str) -> None:
        """Create a directory and its parents if missing."""
        self.fs.makedirs(self.full_path(directory), exist_ok=True)

    def put(self, local: Path, directory: str, name: str | None = None) -> str:
        """Copy a local file into a directory atomically: readers never see it half-written.

        It is written as `<name>._COPYING_` and renamed when complete, as `hdfs dfs -put`
        does; an existing file of the same name is refused."""
        name = name or local.name
        target = posixpath.join(directory, name)
        if self.exists(target):
            raise FileExistsError(f"{self.uri(target)} already exists")
        self.makedirs(directory)
        partial = f"{target}.{uuid.uuid4().hex[:8]}._COPYING_"
        self.fs.put_file(str(local), self.full_path(partial))
        try:
            self.fs.mv(self.full_path(partial), self.full_path(target))
        except BaseException:
            self.fs.rm(self.full_path(partial))
            raise
        return target

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a small file whole."""
        self.makedirs(posixpath.dirname(path))
        self.fs.pipe_file(self.full_path(path), data)

    def move(self, source: str, target: str) -> None:
        """Move a file, creating the target's directory; a file already moved is left alone,
        so a rerun after a crash finishes the job."""
        if not self.exists(source) and self.exists(target):
            return
        self.makedirs(posixpath.dirname(target))
        self.fs.mv(self.full_path(source), self.full_path(target))

    def remove_tree(self, directory: str) -> None:
        """Delete a directory and everything under it, if it exists."""
        if self.exists(directory):
            self.fs.rm(self.full_path(directory), recursive=True)
