"""The share of the stored rows from which publish rebuilds tripdata's indexes."""

from __future__ import annotations

import pytest

from tripflow.warehouse.publish import rebuild_share


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
