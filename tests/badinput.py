"""The bad-input suite's files: each case a whole trip file, hostile in one way and mixed
with good rows, and a plain-Python reading of what the contract makes of any file.

The expected outcome of a file is worked out here from records.check_header/check_line, line
by line as Hadoop's text reader splits lines (at \\n, \\r\\n or a lone \\r); the cases
themselves say nothing of what should happen to them."""

from __future__ import annotations

import csv
import gzip
import re
from dataclasses import dataclass, field

from tests.conftest import SAMPLE
from tripflow.records import (
    COLUMNS,
    MAX_TEXT_LENGTH,
    HeaderError,
    Reason,
    Trip,
    check_header,
    check_line,
)

HEADER = ",".join(COLUMNS)
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def good(case: int, number: int, *, region: str = "", datasource: str = "") -> str:
    """A valid line only this case and number write: a place and minute of their own."""
    lon, lat = 14.0 + case / 100 + number / 10_000, 50.0 + case / 100
    minute = case * 10 + number
    return (
        f"{region or f'Case {case:02d}'},POINT ({lon} {lat}),POINT ({lon + 0.01} {lat + 0.01}),"
        f"2018-03-{1 + minute // 1440:02d} {minute // 60 % 24:02d}:{minute % 60:02d}:00,"
        f"{datasource or 'suite'}"
    )


def _text(case: int, *middle: str, header: str = HEADER, ending: str = "\n") -> bytes:
    """A file of the header, a good line, the middle lines, another good line."""
    lines = [header, good(case, 1), *middle, good(case, 2)]
    return "".join(line + ending for line in lines).encode()


def _row(
    region: str = "Bad",
    origin: str = "POINT (14.4 50.0)",
    when: str = "2018-05-28 09:03:40",
    datasource: str = "suite",
    destination: str = "POINT (14.5 50.1)",
) -> str:
    return ",".join([region, origin, destination, when, datasource])


def _cases() -> dict[str, bytes]:
    cases: dict[str, bytes] = {}

    def add(name: str, content: bytes) -> None:
        cases[f"case-{len(cases) + 1:02d}-{name}.csv"] = content

    def number() -> int:
        """The number of the case being added: its position, 1-based."""
        return len(cases) + 1

    def text(*middle: str, header: str = HEADER, ending: str = "\n") -> bytes:
        """The case's file: header, its first good line, `middle`, its second good line."""
        return _text(number(), *middle, header=header, ending=ending)

    # Encodings.
    add("utf8-bom", b"\xef\xbb\xbf" + text())
    add("latin1-byte", text().replace(b"suite\n", b"su\xe9te\n", 1))
    add(
        "cp1252-quotes",
        text("\x93Old Town\x94,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x")
        .replace("\x93".encode(), b"\x93")
        .replace("\x94".encode(), b"\x94"),
    )
    add(
        "broken-utf8",
        text()
        + b"Prague\xc0\xaf,"
        + _row().split(",", 1)[1].encode()
        + b"\nA\xed\xa0\x80B,"
        + _row().split(",", 1)[1].encode()
        + b"\n"
        + _row(datasource="x").encode()
        + b"\xe2\x82\n",
    )
    add("utf16", ("\ufeff" + HEADER + "\n" + good(number(), 1) + "\n").encode("utf-16-le"))
    add(
        "multibyte-names",
        text(
            _row("Plzeň 🚋 東京 é"),
            _row("Zero\u200bwidth"),
            _row("Line\u2028separator"),
        ),
    )
    # Control characters.
    add(
        "nul-bytes",
        text(
            _row("Old\x00Town"),
            _row(origin="POINT (1\x00 2)"),
            _row(when="2018-05-28\x0009:03:40"),
            _row(datasource="\x00"),
        ),
    )
    add(
        "escape-sequences",
        text(_row(datasource="\x1b[31mred\x1b[0m"), _row("Bell\x07")),
    )
    add(
        "tabs-and-feeds",
        text(
            _row("\tTabbed\t"),
            _row("In\tside"),
            _row("\x0bVert\x0c"),
            _row("Form\x0cfeed"),
        ),
    )
    add(
        "del-and-c1",
        text(
            _row("Del\x7f"),
            _row("C1\u0085inside"),
            _row("\u0085C1 ends\u0085"),
            _row("C1\u009b"),
        ),
    )
    # Quoting.
    add(
        "all-quoted",
        text(
            '"Quoted","POINT (14.4 50.0)","POINT (14.5 50.1)","2018-05-28 09:03:40","suite"',
        ),
    )
    add("escaped-quotes", text(_row('"Old ""big"" Town"'), _row('"Comma, town"')))
    add(
        "open-quote",
        text(
            _row(datasource='"suite'),
            '"Bad,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x',
        ),
    )
    add(
        "field-split-by-line-break",
        text(
            'Bad,POINT (14.4 50.0),POINT (14.5 50.1),2018-05-28 09:03:40,"two',
            'lines"',
        ),
    )
    add(
        "field-split-in-three",
        text(
            '"Three',
            "line",
            'region",POINT (14.4 50.0),POINT (14.5 50.1),2018-05-28 09:03:40,x',
        ),
    )
    add("stray-quotes", text(_row('Old "Town"'), _row('Old Town"'), _row('a\\"b')))
    # Line endings.
    add("crlf", text(_row("Crlf"), ending="\r\n"))
    add("cr-only", text(_row("Cr"), ending="\r"))
    add(
        "mixed-endings",
        (
            HEADER
            + "\r\n"
            + good(number(), 1)
            + "\n"
            + _row("Mixed")
            + "\r"
            + good(number(), 2)
            + "\r\n"
        ).encode(),
    )
    add("no-final-newline", text().rstrip(b"\n"))
    add("blank-lines", text("", "   ", "\t", "\u3000", "", ending="\n"))
    # Sizes.
    add("empty", b"")
    add("header-only", (HEADER + "\n").encode())
    add("megabyte-line", text(_row(datasource="x" * 1_000_000)))
    add(
        "names-too-long",
        text(
            _row("R" * (MAX_TEXT_LENGTH + 1)),
            _row(datasource="é" * (MAX_TEXT_LENGTH + 1)),
            _row("é" * MAX_TEXT_LENGTH),
        ),
    )
    add("many-commas", text("," * 25_000, "x," * 30_000))
    # Numbers.
    add(
        "odd-numbers",
        text(
            _row(origin="POINT (NaN 1)"),
            _row(origin="POINT (Infinity 1)"),
            _row(origin="POINT (0x10 2)"),
            _row(origin="POINT (1e999 2)"),
            _row(origin="POINT (-0 -0.0)"),
            _row(origin="POINT (1d 2)"),
        ),
    )
    add(
        "range-edges",
        text(
            _row(origin="POINT (180 90)", destination="POINT (-180 -90)"),
            _row(origin="POINT (180.0000001 0)"),
            _row(destination="POINT (0 -90.0000001)"),
        ),
    )
    add(
        "loose-points",
        text(
            _row(origin="point(1e1 -2E-1)"),
            _row(origin=" POINT\t( 1  2 ) "),
            _row(origin="POINT (1 2 3)"),
            _row(origin="POINT 1 2"),
        ),
    )
    add(
        "decimal-commas",
        text("Bad,POINT (14,4 50,0),POINT (14,5 50,1),2018-05-28 09:03:40,x"),
    )
    # Dates.
    add(
        "window-edges",
        text(
            _row(when="0001-01-01 00:00:00"),
            _row(when="9999-12-31 23:59:59"),
            _row(when="1969-12-31 23:59:59"),
            _row("Epoch", when="1970-01-01 00:00:00"),
            _row("Late", when="2069-12-31 23:59:59"),
            _row(when="2070-01-01 00:00:00"),
        ),
    )
    add(
        "impossible-times",
        text(
            _row(when="2018-02-29 00:00:00"),
            _row(when="2018-05-28 24:00:00"),
            _row(when="2018-05-28 23:59:60"),
            _row(when="2018-13-01 00:00:00"),
            _row("Leap", when="2016-02-29 12:00:00"),
        ),
    )
    add(
        "time-formats",
        text(
            _row("Iso", when="2018-05-28T09:03:41"),
            _row(when="2018-05-28T09:03:40Z"),
            _row(when="2018-05-28 09:03:40.5"),
            _row(when="28/05/2018 09:03:40"),
            _row(when="2018-05-28"),
        ),
    )
    # Headers.
    add(
        "header-missing-column",
        text(header="region,origin_coord,destination_coord,datetime"),
    )
    add("header-extra-column", text(header=HEADER + ",note"))
    add(
        "header-reordered",
        (
            "datasource,datetime,destination_coord,origin_coord,region\n"
            + "suite,2018-06-01 08:00:00,POINT (2.3 48.8),POINT (2.1 48.9),Reordered\n"
        ).encode(),
    )
    add(
        "header-repeated-column",
        text(header="region,region,origin_coord,destination_coord,datetime,datasource"),
    )
    add("header-uppercase", text(header=HEADER.upper()))
    add(
        "header-padded",
        text(header=" region , origin_coord,destination_coord ,datetime,\tdatasource"),
    )
    # Compression: gzip bytes under a .csv name are binary garbage to a text reader.
    add("gzip-named-csv", gzip.compress(text(), mtime=0))
    # Partial writes: the writer stopped mid-line.
    add("cut-mid-line", text() + _row("Cut").encode()[:40])
    # Repeats: within a file, and trips a batch before this one already stored.
    add(
        "repeated-lines",
        text(good(number(), 3), good(number(), 3), good(number(), 3)),
    )
    add("sample-again", SAMPLE.read_bytes())
    return cases


CASES = _cases()


@dataclass
class Expected:
    """What the contract makes of one file."""

    rows_read: int = 0
    header_error: bool = False
    trips: list[Trip] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)


def expected(content: bytes) -> Expected:
    """Read a file as the job does: Hadoop's line breaks, line 1 the header (UTF-8 with
    replacement, BOM and spaces trimmed), blank lines skipped, every other line checked."""
    lines = _LINE_BREAK.split(content)
    if lines and lines[-1] == b"":
        lines.pop()
    outcome = Expected()
    if not lines:
        outcome.header_error = True
        return outcome
    try:
        positions = check_header(next(csv.reader([lines[0].decode("utf-8", "replace")]), []))
    except HeaderError:
        positions = None
        outcome.header_error = True
    for number, line in enumerate(lines[1:], start=2):
        if not line.decode("utf-8", "replace").strip():
            continue
        outcome.rows_read += 1
        result = Reason.WRONG_HEADER if positions is None else check_line(line, positions)
        if isinstance(result, Trip):
            outcome.trips.append(result)
        else:
            outcome.rejected[number] = result.value
    return outcome
