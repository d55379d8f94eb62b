"""The lake, the Spark job and pyarrow on a real single-node HDFS."""

from __future__ import annotations

import csv
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as pads
import pytest
import requests
from pyspark.sql import SparkSession

from tripflow.lake import LANDING, PROCESSED, REJECTED, TRUSTED, Lake, LakeFile, open_lake
from tripflow.records import Reason, Trip, check_header, check_row
from tripflow.services.hdfs import ManagedHdfs
from tripflow.spark.preprocess import FileReport, PreprocessJob, run

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "trips.csv"
HEADER = "region,origin_coord,destination_coord,datetime,datasource"
EXTRA_LINES = [
    HEADER,
    "Brno,POINT (16.6 49.2),POINT (16.7 49.3),2018-05-28 09:03:40,cheap_mobile",
    "Brno,POINT (16.6 91.0),POINT (16.7 49.3),2018-05-28 09:03:40,cheap_mobile",
    "Brno,POINT (16.6 49.2),POINT (16.7 49.3),2018-05-28 09:03:40,cheap_mobile",
]


@pytest.fixture
def lake(hdfs: ManagedHdfs) -> Lake:
    """Give a test a lake of its own: a fresh directory of the run's HDFS."""
    settings = hdfs.settings.model_copy(
        update={"lake_url": hdfs.url(f"/tests/{uuid.uuid4().hex[:12]}")}
    )
    return open_lake(settings)


def write_local(path: Path, lines: list[str]) -> Path:
    """Write a local text file of lines."""
    path.write_text("".join(line + "\n" for line in lines))
    return path


class OpenWebHdfsWrite:
    """A file created through WebHDFS whose upload has begun but not ended: HDFS holds it
    open for write until the request body ends."""

    def __init__(self, lake: Lake, path: str, head: bytes, tail: bytes) -> None:
        self.release = threading.Event()
        self.sent_head = threading.Event()
        answer = lake.fs._call("CREATE", method="put", path=lake.full_path(path), redirect=False)
        self.location = answer.headers["Location"]
        self.head, self.tail = head, tail
        self.status: int | None = None
        self.thread = threading.Thread(target=self._upload)

    def _body(self) -> Iterator[bytes]:
        yield self.head
        self.sent_head.set()
        self.release.wait()
        yield self.tail

    def _upload(self) -> None:
        response = requests.put(
            self.location,
            data=self._body(),
            headers={"content-type": "application/octet-stream"},
            timeout=120,
        )
        self.status = response.status_code

    def __enter__(self) -> OpenWebHdfsWrite:
        self.thread.start()
        self.sent_head.wait()
        return self

    def __exit__(self, *_: object) -> None:
        self.release.set()
        self.thread.join()


def wait_until_listed(lake: Lake, path: str) -> None:
    """Wait until HDFS lists a file the DataNode is creating (no deadline: pytest's own)."""
    full = lake.full_path(path)
    while not lake.fs.exists(full):
        threading.Event().wait(0.05)


def test_put_on_hdfs_writes_the_file_under_its_name_and_leaves_no_partial(
    lake: Lake, tmp_path: Path
) -> None:
    target = lake.put(SAMPLE, LANDING)

    assert target == f"{LANDING}/trips.csv"
    assert lake.fs.ls(lake.full_path(LANDING)) == [lake.full_path(target)]
    with lake.open(target) as handle:
        assert handle.read() == SAMPLE.read_bytes()


def test_put_on_hdfs_refuses_to_overwrite(lake: Lake) -> None:
    lake.put(SAMPLE, LANDING)
    with pytest.raises(FileExistsError):
        lake.put(SAMPLE, LANDING)


def test_readers_never_list_a_file_put_is_still_writing(lake: Lake, tmp_path: Path) -> None:
    # Several fsspec write blocks (5 MiB each): the upload is a create and several appends.
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (12 * 2**20 + 7))
    writer = threading.Thread(target=lake.put, args=(big, LANDING))
    seen: list[list[LakeFile]] = []
    writer.start()
    while writer.is_alive():
        seen.append(lake.list_files(LANDING))
    writer.join()
    seen.append(lake.list_files(LANDING))

    complete = [LakeFile(f"{LANDING}/big.csv", big.stat().st_size)]
    assert all(listing in ([], complete) for listing in seen)
    assert seen[-1] == complete


def test_list_files_on_hdfs_leaves_out_hidden_and_half_written_files(lake: Lake) -> None:
    for name in ("b.csv", "a.csv", "c.csv._COPYING_", "d.tmp", ".e.csv", "_SUCCESS"):
        lake.write_bytes(f"{LANDING}/{name}", b"x")
    lake.makedirs(f"{LANDING}/subdir")

    assert lake.list_files(LANDING) == [
        LakeFile(f"{LANDING}/a.csv", 1),
        LakeFile(f"{LANDING}/b.csv", 1),
    ]


def test_list_files_leaves_out_a_file_still_open_for_write_through_webhdfs(lake: Lake) -> None:
    lake.write_bytes(f"{LANDING}/done.csv", b"a,b\n")
    late = f"{LANDING}/late.csv"

    with OpenWebHdfsWrite(lake, late, head=b"a,b\n", tail=b"c,d\n") as upload:
        wait_until_listed(lake, late)
        # HDFS itself lists the open file, under its final name, as a plain file.
        raw = {info["name"]: info for info in lake.fs.ls(lake.full_path(LANDING), detail=True)}
        assert raw[lake.full_path(late)]["type"] == "file"
        assert lake.list_files(LANDING) == [LakeFile(f"{LANDING}/done.csv", 4)]

    assert upload.status == 201
    assert lake.list_files(LANDING) == [
        LakeFile(f"{LANDING}/done.csv", 4),
        LakeFile(late, 8),
    ]


def test_list_files_leaves_out_a_file_an_hdfs_client_holds_open(
    lake: Lake, spark: SparkSession
) -> None:
    late = f"{LANDING}/late.csv"
    lake.makedirs(LANDING)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(lake.uri(late))
    filesystem = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = filesystem.create(path)
    try:
        stream.write(bytearray(b"a,b\n"))
        # Makes the bytes readable while the file stays open, as a streaming writer would.
        stream.hflush()
        assert lake.fs.ls(lake.full_path(LANDING)) == [lake.full_path(late)]
        assert lake.list_files(LANDING) == []
    finally:
        stream.close()

    assert lake.list_files(LANDING) == [LakeFile(late, 4)]


def test_move_on_hdfs_creates_the_target_directory_and_is_idempotent(lake: Lake) -> None:
    lake.put(SAMPLE, LANDING)
    target = f"{PROCESSED}/1/trips.csv"

    lake.move(f"{LANDING}/trips.csv", target)
    lake.move(f"{LANDING}/trips.csv", target)

    assert lake.list_files(LANDING) == []
    assert lake.list_files(f"{PROCESSED}/1") == [LakeFile(target, SAMPLE.stat().st_size)]


def test_move_on_hdfs_refuses_to_replace_a_file(lake: Lake) -> None:
    lake.write_bytes("in/a.csv", b"new")
    lake.write_bytes("out/a.csv", b"old")

    with pytest.raises(FileExistsError):
        lake.move("in/a.csv", "out/a.csv")

    with lake.open("out/a.csv") as handle:
        assert handle.read() == b"old"
    assert lake.exists("in/a.csv")


def test_uri_keeps_the_hdfs_url_for_spark(lake: Lake, hdfs: ManagedHdfs) -> None:
    assert lake.uri(LANDING).startswith(f"hdfs://127.0.0.1:{hdfs.port}/tests/")
    assert lake.uri(LANDING).endswith(f"/{LANDING}")


def test_webhdfs_sends_data_to_the_datanode_on_loopback(lake: Lake) -> None:
    lake.write_bytes("a.csv", b"x")
    answer = lake.fs._call("OPEN", path=lake.full_path("a.csv"), redirect=False)
    assert answer.headers["Location"].startswith("http://127.0.0.1:")


def contract_trips(paths: list[Path]) -> tuple[set[Trip], list[Reason]]:
    """Return the distinct valid trips and the reject reasons the plain-Python contract gives."""
    trips: set[Trip] = set()
    reasons: list[Reason] = []
    for path in paths:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        positions = check_header(rows[0])
        for fields in rows[1:]:
            result = check_row(fields, positions)
            if isinstance(result, Trip):
                trips.add(result)
            else:
                reasons.append(result)
    return trips, reasons


def as_trip(row: dict[str, object]) -> Trip:
    """Return a trusted row as a Trip."""
    return Trip(*(row[name] for name in list(Trip.__dataclass_fields__)))


def test_spark_job_reads_csv_from_hdfs_and_writes_parquet_that_pyarrow_reads_back(
    lake: Lake, spark: SparkSession, tmp_path: Path
) -> None:
    extra = write_local(tmp_path / "extra.csv", EXTRA_LINES)
    lake.put(SAMPLE, LANDING)
    lake.put(extra, LANDING)
    job = PreprocessJob(
        batch_id=1,
        files={1: lake.uri(f"{LANDING}/trips.csv"), 2: lake.uri(f"{LANDING}/extra.csv")},
        trusted_url=lake.uri(f"{TRUSTED}/batch=1"),
        rejected_url=lake.uri(f"{REJECTED}/batch=1"),
    )

    reports = run(spark, job)

    assert sorted(reports, key=lambda report: report.file_id) == [
        FileReport(1, 100, 100, 0, 0, None),
        FileReport(2, 3, 1, 1, 1, None),
    ]
    expected_trips, expected_reasons = contract_trips([SAMPLE, extra])
    # The way the warehouse loads staging: pyarrow over the lake's own filesystem.
    trusted = pads.dataset(
        lake.full_path(f"{TRUSTED}/batch=1"), filesystem=lake.fs, format="parquet"
    ).to_table()
    assert {as_trip(row) for row in trusted.to_pylist()} == expected_trips
    assert trusted.num_rows == len(expected_trips)
    rejected = pads.dataset(
        lake.full_path(f"{REJECTED}/batch=1"), filesystem=lake.fs, format="parquet"
    ).to_table()
    assert [(row["file_id"], row["line"], row["reason"]) for row in rejected.to_pylist()] == [
        (2, 3, str(reason)) for reason in expected_reasons
    ]
    spark_rows = spark.read.parquet(job.trusted_url).count()
    assert spark_rows == trusted.num_rows
