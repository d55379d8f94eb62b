"""How publish writes each week partition: the share from which it rebuilds a partition's
indexes, and the free-disk check."""

from __future__ import annotations

from datetime import date

import pytest

from tripflow.warehouse.publish import (
    NotEnoughDisk,
    PartitionPath,
    PartitionStep,
    StoredPartition,
    plan_partitions,
    rebuild_share,
)

MB = 1024**2


def test_small_tables_rebuild_from_three_tenths() -> None:
    assert rebuild_share(0) == rebuild_share(1_000) == rebuild_share(2_000_000) == 0.3


def test_the_share_falls_as_the_table_grows_to_the_measured_point() -> None:
    shares = [rebuild_share(stored) for stored in (2_000_000, 5_000_000, 20_000_000, 40_000_000)]
    assert shares == sorted(shares, reverse=True)
    assert len(set(shares)) == 4
    assert rebuild_share(40_000_000) == pytest.approx(0.13)


def test_the_share_never_falls_below_the_floor() -> None:
    assert rebuild_share(10**12) == 0.1
    assert 0.1 < rebuild_share(60_000_000) < 0.13


WEEK_1, WEEK_2, WEEK_3 = date(2024, 1, 1), date(2024, 1, 8), date(2024, 1, 15)
STORED = {
    WEEK_1: StoredPartition("tripdata_20240101", stored=1_000_000, index_bytes=300 * MB),
    WEEK_2: StoredPartition("tripdata_20240108", stored=1_000_000, index_bytes=300 * MB),
}


def paths(steps: list[PartitionStep]) -> dict[date, PartitionPath]:
    return {step.week: step.path for step in steps}


def test_each_week_is_new_kept_or_rebuilt_by_its_own_share() -> None:
    staged = {WEEK_1: 10_000, WEEK_2: 400_000, WEEK_3: 5}
    assert paths(plan_partitions(staged, STORED)) == {
        WEEK_1: PartitionPath.KEEP,
        WEEK_2: PartitionPath.REBUILD,
        WEEK_3: PartitionPath.NEW,
    }


def test_a_rebuild_without_room_beside_the_old_indexes_keeps_them() -> None:
    staged = {WEEK_1: 400_000, WEEK_2: 400_000}
    need = 800_000 * 620
    roomy = plan_partitions(staged, STORED, available_bytes=need + 600 * MB)
    assert set(paths(roomy).values()) == {PartitionPath.REBUILD}
    tight = plan_partitions(staged, STORED, available_bytes=need + 400 * MB)
    assert sorted(paths(tight).values()) == [PartitionPath.KEEP, PartitionPath.REBUILD]
    assert set(paths(plan_partitions(staged, STORED, available_bytes=need)).values()) == {
        PartitionPath.KEEP
    }


def test_a_batch_that_cannot_fit_fails_before_anything_is_written() -> None:
    with pytest.raises(NotEnoughDisk, match=r"needs about .* GiB"):
        plan_partitions({WEEK_3: 1_000_000}, STORED, available_bytes=100 * MB)
    with pytest.raises(NotEnoughDisk):
        plan_partitions({WEEK_3: 1}, STORED, available_bytes=-5)


def test_an_unseen_disk_is_not_checked() -> None:
    steps = plan_partitions({WEEK_3: 10**9}, STORED, available_bytes=None)
    assert paths(steps) == {WEEK_3: PartitionPath.NEW}
