"""How much would a pre-aggregated grid shrink the data? Distinct keys per trip, by cell size.

Draws trips with tripflow's generator and counts the distinct keys of three candidate
aggregates: (region, datasource, week, origin cell, destination cell) for match=both,
(region, datasource, week, origin cell) for match=origin, and the pair grid without the
datasource. Ratio = trips / distinct keys: 1.0 means the grid is as large as the table.

Usage: .venv/bin/python benchmarks/grid_compression.py [--rows 2000000]
"""

from __future__ import annotations

import argparse

import numpy as np

from tripflow import generate

WEEK_SECONDS = 7 * 86400


def distinct_rows(*columns: np.ndarray) -> int:
    """Number of distinct rows of equally long integer columns."""
    return len(np.unique(np.stack(columns, axis=1), axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    trips = generate.sample_trips(np.random.default_rng(arguments.seed), arguments.rows)
    week = (trips.seconds - generate.YEAR_START) // WEEK_SECONDS
    region = trips.region.astype(np.int64)
    datasource = trips.datasource.astype(np.int64)
    print(f"{arguments.rows:,} trips; ratio = trips / distinct keys")
    print(f"{'cell (deg)':>10} {'pair':>8} {'origin':>8} {'pair, no datasource':>20}")
    for cell in (0.002, 0.005, 0.01, 0.02, 0.05):
        ox = np.floor(trips.origin_lon / cell).astype(np.int64)
        oy = np.floor(trips.origin_lat / cell).astype(np.int64)
        dx = np.floor(trips.destination_lon / cell).astype(np.int64)
        dy = np.floor(trips.destination_lat / cell).astype(np.int64)
        pair = distinct_rows(region, datasource, week, ox, oy, dx, dy)
        origin = distinct_rows(region, datasource, week, ox, oy)
        pair_only = distinct_rows(region, week, ox, oy, dx, dy)
        rows = arguments.rows
        print(f"{cell:>10} {rows / pair:>8.1f} {rows / origin:>8.1f} {rows / pair_only:>20.1f}")


if __name__ == "__main__":
    main()
