"""One question answered from the serving-scale copy by a fresh process, only the answer timed.

benchmarks/serving_scale.py runs this script once per question, as benchmarks/cold_answer.py
is run for the query benchmark, so nothing an earlier question left helps. The process
first does what an API worker does once before it serves, minus PostgreSQL: it reads the
weekly summary (from the JSON file the benchmark wrote instead of from trip_week_summary),
opens DuckDB and attaches the segments of the published batches; that is timed apart as
start-up. Then one question is planned, counted and answered, and timed.

The imports stay few: this process's memory is part of what the benchmark reports.

Reads one JSON request on stdin:
    {"copy_dir": ..., "summary": ..., "batches": [...], "threads": ..., "memory_limit": ...,
     "question": <AreaQuery.to_json()>}
Prints one JSON line: {"ms": ..., "startup_ms": ..., "answer": <the answer as the API sends
it>, "peak_rss_kb": ..., "imports_rss_kb": <peak before the start-up>}.

Usage: .venv/bin/python benchmarks/serving_scale_answer.py < REQUEST_JSON
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cold_answer import query_from_json

from tripflow.serving.copy import Segment, ServingCopy
from tripflow.serving.engine import Engine
from tripflow.warehouse.plan import Summary, plan_question
from tripflow.weeks import AreaQuery, WeeklyAverage


def save_summary(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    """Write the summary's rows as JSON (dates and times in ISO form)."""
    content = [
        [
            region,
            datasource,
            week.isoformat(),
            int(trips),
            first.isoformat(),
            last.isoformat(),
            *(float(value) for value in extents),
        ]
        for region, datasource, week, trips, first, last, *extents in rows
    ]
    path.write_text(json.dumps(content))


def load_summary(path: Path) -> Summary:
    """Return the Summary of the rows save_summary wrote."""
    rows = [
        (
            region,
            datasource,
            date.fromisoformat(week),
            trips,
            datetime.fromisoformat(first),
            datetime.fromisoformat(last),
            *extents,
        )
        for region, datasource, week, trips, first, last, *extents in json.loads(path.read_text())
    ]
    return Summary(rows)


def answer_question(
    summary: Summary, engine: Engine, segments: Sequence[Segment], query: AreaQuery
) -> WeeklyAverage:
    """Answer one question as tripflow does, minus PostgreSQL: plan, count, answer."""
    plan = plan_question(summary, query)
    counted = engine.count_groups(segments, plan)
    return plan.answer(counted)


@dataclass(frozen=True)
class Reader:
    """What answers a question in this process: the summary, the engine and its segments."""

    summary: Summary
    engine: Engine
    segments: list[Segment]

    @classmethod
    def started(
        cls, copy_dir: Path, summary_path: Path, batches: Sequence[int], threads: int, memory: str
    ) -> Reader:
        """Do what an API worker does before it serves: read the summary, open DuckDB and
        attach the segments of the published batches."""
        summary = load_summary(summary_path)
        segments = ServingCopy(copy_dir).cover(batches)
        if segments is None:
            raise RuntimeError(f"the copy {copy_dir} lacks some of batches {list(batches)}")
        engine = Engine(memory_limit=memory, threads=threads)
        cursor, _ = engine.attach(segments)
        cursor.close()
        return cls(summary, engine, segments)

    def answer(self, query: AreaQuery) -> WeeklyAverage:
        """Answer one question."""
        return answer_question(self.summary, self.engine, self.segments, query)


def peak_rss_kb() -> int:
    """Return the peak resident memory of this process so far, in KiB."""
    # VmHWM starts afresh at exec; getrusage's ru_maxrss does not: a child forked from a
    # large parent would report the parent's peak.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    """Start up, then time one answer to the question of the request on stdin; print the
    result line."""
    request = json.load(sys.stdin)
    query = query_from_json(request["question"])
    # Peak so far: the interpreter and the imports, before any data is touched.
    imports_rss = peak_rss_kb()
    started = time.perf_counter()
    reader = Reader.started(
        Path(request["copy_dir"]),
        Path(request["summary"]),
        request["batches"],
        int(request["threads"]),
        request["memory_limit"],
    )
    startup = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    answer = reader.answer(query)
    milliseconds = (time.perf_counter() - started) * 1000
    result = {
        "ms": milliseconds,
        "startup_ms": startup,
        "answer": answer.to_json(),
        "peak_rss_kb": peak_rss_kb(),
        "imports_rss_kb": imports_rss,
    }
    print(json.dumps(result))
    return 0


@dataclass(frozen=True)
class ColdRun:
    """What one fresh process measured and answered."""

    milliseconds: float
    startup_milliseconds: float
    answer: dict[str, Any]
    peak_rss_kb: int
    imports_rss_kb: int


def ask_cold(request: dict[str, Any], query: AreaQuery) -> ColdRun:
    """Answer a question from the copy in a fresh process."""
    from common import ask_fresh_process

    result = ask_fresh_process(Path(__file__).resolve(), {**request, "question": query.to_json()})
    return ColdRun(
        float(result["ms"]),
        float(result["startup_ms"]),
        result["answer"],
        int(result["peak_rss_kb"]),
        int(result["imports_rss_kb"]),
    )


if __name__ == "__main__":
    sys.exit(main())
