"""wayview.store.sqlite.export: read a SQLite store table by table, read-only (the source side
of `wayview migrate-store`, see wayview.store.postgres.copy)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wayview.errors import InvalidInput

#: Tables that are not data (SQLite's own bookkeeping, R*Tree shadows that the target's own
#: indexes replace, the schema history).
#: Not copied: bookkeeping, and indexes the target builds itself (its own z14 packs).
_NOT_DATA = ("schema_migrations", "sqlite_sequence", "sqlite_stat1", "sqlite_stat4",
             "tile_image_packs")
_NOT_DATA_SUFFIXES = ("_rtree", "_rtree_node", "_rtree_parent", "_rtree_rowid")
_BATCH = 5_000
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def sqlite_path_of(url: str, *, cwd: Path | None = None) -> Path:
    """The file a SQLite URL names, in the forms people write (SQLAlchemy's included).

    `sqlite:////abs/path` (SQLAlchemy's absolute form), `sqlite:///abs/path` (absolute, as
    wayview's docs write it; SQLAlchemy reads it relative to the working directory, which is
    used when only that file exists) and `sqlite://localhost/abs/path`; a query string
    (`?mode=ro`) is ignored. Anything else raises InvalidInput with one line.

    >>> sqlite_path_of("sqlite:////srv/w/wayview.db"), sqlite_path_of("sqlite:///srv/w.db")
    (PosixPath('/srv/w/wayview.db'), PosixPath('/srv/w.db'))
    >>> sqlite_path_of("sqlite://db.example/w.db")
    Traceback (most recent call last):
    wayview.errors.InvalidInput: sqlite URL with a host ('db.example'): use sqlite:////abs/path
    """
    scheme, colon, rest = url.partition(":")
    if not colon or scheme.lower() not in ("sqlite", "sqlite3"):
        raise InvalidInput(f"not a sqlite URL: {url!r} (use sqlite:////abs/path/wayview.db)")
    rest = rest.split("?", 1)[0]
    if not rest.startswith("//"):
        raise InvalidInput(f"sqlite URL without //: {url!r} (use sqlite:////abs/path)")
    host, slash, path = rest[2:].partition("/")
    if host and host != "localhost":
        raise InvalidInput(f"sqlite URL with a host ({host!r}): use sqlite:////abs/path")
    if not slash or not path.strip("/"):
        raise InvalidInput(f"sqlite URL without a file: {url!r} (use sqlite:////abs/path)")
    if path.startswith("/"):  # four slashes: absolute
        return Path("/" + path.lstrip("/"))
    absolute = Path("/" + path)
    relative = (cwd or Path.cwd()) / path
    if not absolute.exists() and relative.exists():
        return relative
    return absolute


def _name(name: str) -> str:
    """A table or column name from the schema, checked before it goes into SQL."""
    if not name or set(name) - _NAME_CHARS:
        raise InvalidInput(f"unexpected name in the SQLite schema: {name!r}")
    return name


class SqliteExport:
    """A read-only view of one SQLite store file."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InvalidInput(f"no SQLite database at {path}")
        self.path = path
        # as_uri percent-encodes the path: "?", "#" or "%" in a folder name stay literal
        self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)

    def close(self) -> None:
        """Close the file."""
        self._conn.close()

    def tables(self) -> list[str]:
        """The data tables."""
        names = [r[0] for r in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return [n for n in names if n not in _NOT_DATA and not n.endswith(_NOT_DATA_SUFFIXES)]

    def columns(self, table: str) -> list[str]:
        """A table's columns in order."""
        return [r[1] for r in self._conn.execute(f"PRAGMA table_info({_name(table)})")]

    def count(self, table: str) -> int:
        """Rows in a table."""
        return int(self._conn.execute(f"SELECT count(*) FROM {_name(table)}").fetchone()[0])

    def rows(self, table: str, columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """Every row of `table` as the values of `columns` ("rowid" allowed), in batches."""
        select = ", ".join(_name(c) for c in columns)
        cursor = self._conn.execute(f"SELECT {select} FROM {_name(table)}")
        while batch := cursor.fetchmany(_BATCH):
            yield from batch
