"""wayview.store.sqlite.maintenance: schema status, online snapshots and restores of the SQLite
store (`wayview migrate --check`, `wayview backup`, `wayview restore`).

A snapshot uses SQLite's online backup API in one step: it copies every page inside one read
transaction, so it is the database as of one commit, while the server goes on writing (in WAL
mode a reader never blocks the writer). The copy is then switched out of WAL mode, so that it
is one self-contained file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from wayview.errors import InvalidInput

__all__ = ["COUNTED_TABLES", "applied_versions", "check_file", "current_media",
           "media_versions", "restore_file", "snapshot", "table_counts"]

#: Tables whose row counts a backup manifest records (and a restore compares).
COUNTED_TABLES = ("users", "organizations", "apps", "tokens", "sequences", "images",
                  "map_features", "detections", "jobs", "upload_sessions", "exports")


def _readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot write (not `mode=ro`: a WAL database needs its -shm file,
    which a read-only connection may not create when no other process has the file open)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA query_only = ON")
    return conn


def applied_versions(path: Path) -> set[int] | None:
    """The migration versions recorded in the database file at `path`; None when there is
    no file (no store yet). Opens the file read-only and changes nothing."""
    if not path.exists():
        return None
    conn = _readonly(path)
    try:
        try:
            rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return set()
            raise
        return {int(row[0]) for row in rows}
    finally:
        conn.close()


def snapshot(path: Path, target: Path,
             on_media: Callable[[list[tuple[int, int]]], None] | None = None) -> None:
    """Copy the live database `path` into the new file `target` (mode 0600) as of one commit,
    while other connections keep writing. `on_media` is called with the snapshot's
    `media_versions` before the pages are copied, inside the same read transaction."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    source = _readonly(path)
    copy = sqlite3.connect(target, isolation_level=None)
    try:
        source.execute("BEGIN")  # the backup below reads in this transaction's snapshot
        if on_media is not None:
            on_media(_media(source))
        source.backup(copy)  # pages=-1: every page in one step
        source.execute("COMMIT")
        copy.execute("PRAGMA journal_mode = DELETE")
    finally:
        copy.close()
        source.close()


def table_counts(path: Path) -> dict[str, int]:
    """Rows of each `COUNTED_TABLES` table present in the database file at `path`."""
    conn = _readonly(path)
    try:
        present = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in COUNTED_TABLES if table in present}
    finally:
        conn.close()


def _media(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(images)")}
    version = "media_version" if "media_version" in columns else "0"
    return [(int(r[0]), int(r[1])) for r in conn.execute(f"SELECT id, {version} FROM images")]


def media_versions(path: Path) -> list[tuple[int, int]]:
    """(image id, media version) of every image in the database file at `path`."""
    conn = _readonly(path)
    try:
        return _media(conn)
    finally:
        conn.close()


def current_media(path: Path, ids: list[int]) -> dict[int, int]:
    """The media version of each of `ids` still stored in the live database at `path`."""
    conn = _readonly(path)
    try:
        found: dict[int, int] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            found.update((int(r[0]), int(r[1])) for r in conn.execute(
                f"SELECT id, media_version FROM images WHERE id IN ({','.join('?' * len(chunk))})",
                chunk))
        return found
    finally:
        conn.close()


def check_file(path: Path) -> None:
    """Raise InvalidInput unless `path` is an intact SQLite database (`PRAGMA quick_check`)."""
    try:
        conn = _readonly(path)
        try:
            result = [row[0] for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(f"{path.name} is not a usable SQLite database: {exc}") from None
    if result != ["ok"]:
        raise InvalidInput(f"{path.name} is damaged: {'; '.join(result[:3])}")


def restore_file(source: Path, database: Path) -> None:
    """Put the snapshot `source` in place as the database file `database` (mode 0600), which
    must not exist; stale -wal/-shm files of an earlier database there are removed."""
    if database.exists():
        raise InvalidInput(f"{database} exists")
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            database.with_name(database.name + suffix).unlink()
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = database.with_name(database.name + ".restoring")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, database)
