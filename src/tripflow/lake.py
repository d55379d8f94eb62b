"""The lake: one small interface over any fsspec filesystem (file://, hdfs://, s3://).

An `hdfs://host:port/path` lake is read and written from Python through WebHDFS (HTTP, no
native libhdfs), on the NameNode's HTTP port, while `uri()` keeps the hdfs:// URL for Spark,
which speaks HDFS's own protocol. An `s3://bucket/prefix` lake goes through s3fs from Python
and through Hadoop's S3A from Spark (`spark_conf()` says how), under the same s3:// URLs that
EMR's own filesystem reads."""

from __future__ import annotations

import posixpath
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.webhdfs import WebHDFS

if TYPE_CHECKING:
    from tripflow.config import Settings

LANDING = "data/raw/tripdata"
PROCESSED = "data/processed/tripdata"
TRUSTED = "data/trusted/tripdata"
REJECTED = "data/rejected/tripdata"

# Writers expose a file under one of these names until it is complete.
IN_FLIGHT_SUFFIXES = ("._COPYING_", ".tmp")
# The NameNode's HTTP port (WebHDFS) in Hadoop 3, when an hdfs:// lake is given no other.
WEBHDFS_PORT = 9870


def trusted_dir(batch_id: int, attempt: str | None = None) -> str:
    """Return the lake directory of a batch's trusted Parquet as one run of the Spark job
    wrote it (no attempt: as batches processed before runs had directories of their own)."""
    directory = f"{TRUSTED}/batch={batch_id}"
    return f"{directory}/attempt={attempt}" if attempt else directory


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
        """Open the lake at a URL; storage options go to its fsspec filesystem.

        For hdfs:// they are WebHDFS's: `port` is the NameNode's HTTP port (default 9870,
        the URL's port being the RPC port Spark uses), `user` the HDFS user name, and
        `data_proxy` rewrites DataNode addresses a client cannot reach as given."""
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.storage_options = dict(storage_options)
        if parts.scheme == "hdfs":
            # fsspec's own hdfs:// needs libhdfs and a Hadoop install; WebHDFS needs neither.
            options = {"port": WEBHDFS_PORT, **storage_options}
            self.fs = WebHDFS(host=parts.hostname or "127.0.0.1", **options)
            root = parts.path
        elif parts.scheme in ("s3", "s3a"):
            # A listing cached by s3fs would hide files that landed since: the sensor and
            # the claim must see the bucket as it is now.
            options = {"use_listings_cache": False, **storage_options}
            self.fs, root = fsspec.core.url_to_fs(f"s3://{parts.netloc}{parts.path}", **options)
        else:
            self.fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = root.rstrip("/") or "/"

    @property
    def is_object_store(self) -> bool:
        """Tell whether the lake is an object store (S3): no directories, no renames."""
        return urlsplit(self.url).scheme in ("s3", "s3a")

    def spark_conf(self) -> dict[str, str]:
        """Return the Hadoop settings Spark needs to read and write this lake (none for
        file:// and hdfs://): for s3://, the S3A connector with this lake's endpoint, region
        and keys, also serving plain s3:// URLs."""
        if not self.is_object_store:
            return {}
        conf = {
            "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
            "fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
        }
        client = self.storage_options.get("client_kwargs", {})
        if region := client.get("region_name"):
            conf["fs.s3a.endpoint.region"] = str(region)
        if endpoint := self.storage_options.get("endpoint_url"):
            conf["fs.s3a.endpoint"] = str(endpoint)
            # A server of one's own: bucket in the path, not the host name; plain HTTP on
            # loopback.
            conf["fs.s3a.path.style.access"] = "true"
            conf["fs.s3a.connection.ssl.enabled"] = str(
                str(endpoint).startswith("https://")
            ).lower()
        key, secret = self.storage_options.get("key"), self.storage_options.get("secret")
        if key and secret:
            conf["fs.s3a.aws.credentials.provider"] = (
                "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
            )
            conf["fs.s3a.access.key"] = str(key)
            conf["fs.s3a.secret.key"] = str(secret)
        return conf

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
            if self._open_for_write(posixpath.join(full, name)):
                continue
            found.append(LakeFile(posixpath.join(directory, name), int(info["size"])))
        return sorted(found, key=lambda item: item.path)

    def _open_for_write(self, full: str) -> bool:
        """Tell whether a writer still holds the file open (HDFS lists such a file, with the
        length of its completed blocks only, often 0); a file gone meanwhile counts as open."""
        if not isinstance(self.fs, WebHDFS):
            return False
        # LISTSTATUS and GETFILESTATUS do not tell; the block locations do. GET_BLOCK_LOCATIONS
        # is the NameNode's internal WebHDFS operation (public GETFILEBLOCKLOCATIONS leaves
        # the flag out); length=1 keeps the answer to one block.
        try:
            answer = self.fs._call("GET_BLOCK_LOCATIONS", path=full, offset=0, length=1)
        except FileNotFoundError:
            return True
        return bool(answer.json()["LocatedBlocks"]["isUnderConstruction"])

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

    def remove_tree(self, path: str) -> None:
        """Delete a directory of the lake and everything under it."""
        self.fs.rm(self.full_path(path), recursive=True)

    def makedirs(self, directory: str) -> None:
        """Create a directory and its parents if missing."""
        self.fs.makedirs(self.full_path(directory), exist_ok=True)

    def put(self, local: Path, directory: str, name: str | None = None) -> str:
        """Copy a local file into a directory atomically: readers never see it half-written.

        It is written as `<name>._COPYING_` and renamed when complete, as `hdfs dfs -put`
        does; on S3, where an object appears whole when its upload completes (a multipart
        upload too) and a rename is a copy, it is uploaded under its name. An existing file
        of the same name is refused."""
        name = name or local.name
        target = posixpath.join(directory, name)
        if self.exists(target):
            raise FileExistsError(f"{self.uri(target)} already exists")
        if self.is_object_store:
            self.fs.put_file(str(local), self.full_path(target))
            return target
        self.makedirs(directory)
        partial = f"{target}.{uuid.uuid4().hex[:8]}._COPYING_"
        self.fs.put_file(str(local), self.full_path(partial))
        try:
            self._rename(partial, target)
        except BaseException:
            self.fs.rm(self.full_path(partial))
            raise
        return target

    def _rename(self, source: str, target: str) -> None:
        full_source, full_target = self.full_path(source), self.full_path(target)
        if self.is_object_store and self.fs.isdir(full_source):
            # On S3 a "directory" is a prefix with no object of its own: copy each object
            # under it, then delete them.
            for found in self.fs.find(full_source):
                relative = posixpath.relpath(found, full_source)
                self.fs.copy(found, posixpath.join(full_target, relative))
            self.fs.rm(full_source, recursive=True)
            return
        self.fs.mv(full_source, full_target)
        # HDFS refuses a rename onto an existing file by answering `false`, which WebHDFS
        # passes on as a success: a source still in place is the only sign.
        if self.fs.exists(self.full_path(source)):
            raise FileExistsError(f"cannot rename {self.uri(source)} to {self.uri(target)}")

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
        self._rename(source, target)


def lake_options(settings: Settings) -> dict[str, Any]:
    """Return the storage options of the settings' lake: WebHDFS port and user for hdfs://;
    endpoint, region and keys for s3://."""
    scheme = urlsplit(settings.lake_root).scheme
    if scheme == "hdfs":
        return {"port": settings.hdfs_http_port, "user": settings.hdfs_user}
    if scheme in ("s3", "s3a"):
        options: dict[str, Any] = {"client_kwargs": {"region_name": settings.s3_region}}
        if settings.s3_endpoint:
            options["endpoint_url"] = settings.s3_endpoint
        if credentials := settings.s3_credentials:
            options["key"], options["secret"] = credentials
        return options
    return {}


def open_lake(settings: Settings) -> Lake:
    """Open the lake the settings name."""
    return Lake(settings.lake_root, **lake_options(settings))


def stable_files(previous: Mapping[str, int], current: Mapping[str, int]) -> list[str]:
    """Return the paths whose size did not change between two looks, sorted."""
    return sorted(path for path, size in current.items() if previous.get(path) == size)


def file_sizes(lake: Lake, directory: str) -> dict[str, int]:
    """Return the size of every complete file in a lake directory, by path."""
    return {item.path: item.size for item in lake.list_files(directory)}


def settled_files(lake: Lake, directory: str, seconds: float) -> tuple[list[str], list[str]]:
    """Look at a directory twice, `seconds` apart: return the files whose size held (safe to
    claim) and those that changed or appeared meanwhile (still being written), both sorted.

    The DAG's sensor claims by the same rule; a writer that pauses longer than `seconds`
    between writes can still look complete, which is why writers should write under a
    hidden or in-flight name and rename (README, "Landing files")."""
    before = file_sizes(lake, directory)
    if not before:
        # Nothing waiting: no wait either (a file landing now is not complete yet anyway).
        return [], []
    time.sleep(seconds)
    after = file_sizes(lake, directory)
    stable = stable_files(before, after)
    return stable, sorted(set(after) - set(stable))
