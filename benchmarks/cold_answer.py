"""One weekly-average question answered by a fresh Python process, only the answer timed.

The query benchmark (query.py) runs this script once per question and store, so nothing an
earlier question left helps: no answer cache, no rows in DuckDB's buffers. The OS page
cache and PostgreSQL's shared buffers stay as earlier runs left them: "cold" means a fresh
process, not a cold machine.

The process first does what an API worker does once before it serves
(`tripflow.answers.warm_up`: the summary read, DuckDB opened, the segments in use
attached; for plain DuckDB, the database opened), timed apart as start-up; then the
question is timed, with DuckDB's buffers still empty of its rows.

Reads one JSON request on stdin (not the command line, where the database URL's password
would show in every process listing):
    {"store": "tripflow", "database_url": ..., "serving_dir": ..., "question": ...}
    {"store": "plain-duckdb", "path": ..., "threads": ..., "memory_limit": ..., "question": ...}
where "question" is AreaQuery.to_json(), the question as the API echoes it. Prints one JSON
line: {"ms": ..., "startup_ms": ..., "answer": <the answer as the API sends it>,
"all_matching": <matching trips wherever they fell, or null>, "warnings": [what tripflow
logged, such as answering from PostGIS because the copy lacks batches]}.

Usage: .venv/bin/python benchmarks/cold_answer.py < REQUEST_JSON
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tripflow.weeks import AreaQuery, BBox, Match, WeeklyAverage

TRIPFLOW = "tripflow"
PLAIN_DUCKDB = "plain-duckdb"


@dataclass(frozen=True)
class ColdAnswer:
    """What one fresh process measured and answered."""

    milliseconds: float
    startup_milliseconds: float
    answer: WeeklyAverage
    all_matching: int | None
    warnings: list[str]


def ask_tripflow(database_url: str, serving_dir: Path, query: AreaQuery) -> ColdAnswer:
    """Answer a question through tripflow's serving copy in a fresh process."""
    return _ask(
        {"store": TRIPFLOW, "database_url": database_url, "serving_dir": str(serving_dir)}, query
    )


def ask_plain_duckdb(path: Path, threads: int, memory_limit: str, query: AreaQuery) -> ColdAnswer:
    """Answer a question from the plain DuckDB database in a fresh process."""
    request = {"path": str(path), "threads": threads, "memory_limit": memory_limit}
    return _ask({"store": PLAIN_DUCKDB, **request}, query)


def _ask(request: dict[str, Any], query: AreaQuery) -> ColdAnswer:
    from common import ask_fresh_process

    result = ask_fresh_process(Path(__file__).resolve(), {**request, "question": query.to_json()})
    return ColdAnswer(
        float(result["ms"]),
        float(result["startup_ms"]),
        answer_from_json(query, result["answer"]),
        result["all_matching"],
        list(result["warnings"]),
    )


def answer_from_json(query: AreaQuery, content: dict[str, Any]) -> WeeklyAverage:
    """Return the WeeklyAverage whose API JSON is `content`."""
    series = content["series"]
    span = [date.fromisoformat(item["week_start"]) for item in series]
    counts = {date.fromisoformat(item["week_start"]): int(item["trips"]) for item in series}
    return WeeklyAverage(query, span, {week: trips for week, trips in counts.items() if trips})


def query_from_json(content: dict[str, Any]) -> AreaQuery:
    """Return the AreaQuery whose API echo (AreaQuery.to_json) is `content`."""
    start, end = (
        datetime.fromisoformat(content[name]) if content[name] else None for name in ("from", "to")
    )
    return AreaQuery(
        bbox=BBox(*content["bbox"]) if content["bbox"] else None,
        region=content["region"],
        datasource=content["datasource"],
        start=start,
        end=end,
        match=Match(content["match"]),
    )


def answer_tripflow(database_url: str, serving_dir: str, query: AreaQuery) -> dict[str, Any]:
    """Time tripflow's answer to one question; return the result line."""
    # Imported here, not at the top: a run starts two processes per question, and the
    # plain DuckDB one needs none of tripflow's serving machinery.
    from common import WarningRecorder, open_serving

    from tripflow import answers
    from tripflow.warehouse.database import connect

    recorder = WarningRecorder.installed()
    serving = open_serving(Path(serving_dir))
    with connect(database_url, autocommit=True) as conn:
        # What an API worker does once before it serves (tripflow.api.gunicorn_hooks):
        # timed apart, as start-up, not as part of the question.
        started = time.perf_counter()
        answers.warm_up(conn, serving)
        startup = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        answer = answers.weekly_average(conn, query, serving=serving)
        milliseconds = (time.perf_counter() - started) * 1000
    return {
        "ms": milliseconds,
        "startup_ms": startup,
        "answer": answer.to_json(),
        "all_matching": None,
        "warnings": recorder.take(),
    }


def answer_plain_duckdb(
    path: str, threads: int, memory_limit: str, query: AreaQuery
) -> dict[str, Any]:
    """Time the plain DuckDB baseline's answer to one question; return the result line."""
    from baselines import open_plain_duckdb, plain_weekly_average

    started = time.perf_counter()
    with open_plain_duckdb(Path(path), threads, memory_limit) as duck:
        # Opening the database is start-up, as tripflow's warm-up is.
        startup = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        found = plain_weekly_average(duck, query)
        milliseconds = (time.perf_counter() - started) * 1000
    return {
        "ms": milliseconds,
        "startup_ms": startup,
        "answer": found.answer.to_json(),
        "all_matching": found.all_matching,
        "warnings": [],
    }


def main() -> int:
    """Answer the question of the request on stdin; print the result line."""
    request = json.load(sys.stdin)
    query = query_from_json(request["question"])
    if request["store"] == TRIPFLOW:
        result = answer_tripflow(request["database_url"], request["serving_dir"], query)
    elif request["store"] == PLAIN_DUCKDB:
        result = answer_plain_duckdb(
            request["path"], int(request["threads"]), request["memory_limit"], query
        )
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
