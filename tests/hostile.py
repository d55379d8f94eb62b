"""Hostile data lines mixed with good ones: broken bytes, quoting and names a database cannot
index. Each test decides the expected outcome of a line with records.check_line, the
plain-Python contract; nothing here says what the answer should be."""

from __future__ import annotations

from tripflow.records import COLUMNS, MAX_TEXT_LENGTH

HEADER = ",".join(COLUMNS).encode()
POSITIONS = {column: index for index, column in enumerate(COLUMNS)}
_POINTS = b"POINT (14.4 50.0),POINT (14.5 50.1)"


def line(
    region: bytes, datasource: bytes = b"funny_car", when: bytes = b"2018-05-28 09:03:40"
) -> bytes:
    """A data line with the given region, datasource and datetime."""
    return b",".join([region, _POINTS, when, datasource])


GOOD = [
    line(b"Prague"),
    line(b"Brno", when=b"2018-06-04 10:00:00"),
    line("Plze\u0148 \U0001f68b".encode()),  # non-ASCII, a 4-byte character
    line("\ufffd literally".encode()),  # U+FFFD written in the file as valid UTF-8
    line(b'"Old ""big"" Town"'),  # quotes inside a quoted field, balanced
    line(b"\t\x1fTrimmed\x1f "),  # whitespace controls at the ends are trimmed away
    line(("\u00e9" * MAX_TEXT_LENGTH).encode()),  # as long as a name may be
]
HOSTILE = {
    "NUL in region": line(b"Old\x00Town"),
    "NUL in datasource": line(b"Prague", b"funny\x00car"),
    "ESC in region": line(b"Old\x1b[31mTown"),
    "tab inside datasource": line(b"Prague", b"funny\tcar"),
    "DEL in region": line(b"Old\x7fTown"),
    "C1 control in region": line("Old\u009bTown".encode()),
    "Latin-1 byte": line(b"Pr\xe1gue"),
    "truncated UTF-8 at the end": line(b"Prague", b"funny_car\xe2\x82"),
    "overlong UTF-8": line(b"Prague\xc0\xaf"),
    "UTF-16 surrogate in UTF-8": line(b"Prague\xed\xa0\x80"),
    "quoted region split by a line break, first half": b'Prague,"Old',
    "quoted region split by a line break, second half": line(b'Town"'),
    "stray quote in a name": line(b'Old Town"'),
    "region of 10,000 characters": line(b"R" * 10_000),
    "datasource one character too long": line(b"Prague", b"d" * (MAX_TEXT_LENGTH + 1)),
    "a 1 MB line": line(b"Prague", b"x" * 1_000_000),
}


def file_bytes(lines: list[bytes]) -> bytes:
    """A whole trip file: the header, then the lines."""
    return b"".join(item + b"\n" for item in [HEADER, *lines])
