"""SQL statements shipped as .sql files in the package."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_sql(name: str) -> str:
    """Return the text of `sql/<name>.sql`."""
    return (resources.files("tripflow.warehouse") / "sql" / f"{name}.sql").read_text()
