"""SQL differences between SQLite and the MySQL protocol (Dolt, MariaDB, MySQL).

Repository SQL is written once with ``?`` placeholders; the dialect rewrites it for pymysql
(``%s``), builds upserts, and fills the ``{{...}}`` tokens of migration files.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Final, Literal

__all__ = ["Dialect", "SQLITE", "MYSQL"]

_TOKEN = re.compile(r"\{\{([A-Z_]+)\}\}")


class Dialect:
    """One SQL flavour; immutable and shared."""

    def __init__(self, name: Literal["sqlite", "mysql"], tokens: dict[str, str]) -> None:
        self.name: Final = name
        self._tokens = tokens

    def __repr__(self) -> str:
        return f"Dialect({self.name})"

    @functools.lru_cache(maxsize=512)  # noqa: B019 -- dialects are two process-wide singletons
    def sql(self, text: str) -> str:
        """``?`` placeholders -> this driver's paramstyle."""
        if self.name == "sqlite":
            return text
        # pymysql formats with %, so a literal % must be doubled first.
        return text.replace("%", "%%").replace("?", "%s")

    def fill(self, text: str) -> str:
        """Replace ``{{TOKEN}}`` in migration SQL; unknown tokens are an error."""

        def sub(m: re.Match[str]) -> str:
            key = m.group(1)
            if key not in self._tokens:
                raise ValueError(f"unknown migration token {{{{{key}}}}}")
            return self._tokens[key]

        return _TOKEN.sub(sub, text)

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """INSERT that replaces the non-key columns of an existing row (``?`` placeholders)."""
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        rest = [c for c in columns if c not in key]
        if self.name == "sqlite":
            sets = ", ".join(f"{c} = excluded.{c}" for c in rest)
            return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
        sets = ", ".join(f"{c} = VALUES({c})" for c in rest)
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {sets}"


SQLITE = Dialect(
    "sqlite",
    {"AUTO_ID": "INTEGER PRIMARY KEY AUTOINCREMENT", "TABLE_OPTIONS": ""},
)
MYSQL = Dialect(
    "mysql",
    {
        "AUTO_ID": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
        "TABLE_OPTIONS": " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    },
)
