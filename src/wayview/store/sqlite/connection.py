"""wayview.store.sqlite.connection: one writer thread, thread-local readers, WAL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from wayview.errors import Conflict, StoreUnavailable
from wayview.model.geo import haversine_m

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn sqlite3 exceptions into domain errors at the store boundary (STYLE rule 7)."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise Conflict(str(exc)) from exc
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"database error: {exc}") from exc


_TILE_REC = struct.Struct("<8q")


def tile_rec(image_id: int, qk: int, captured_at_ms: int, compass: int, is_pano: int,
             organization_id: int | None, creator_id: int, sequence_rowid: int) -> bytes:
    """An image's packed tile record (see migration 0004): 8 little-endian int64.

    >>> len(tile_rec(1, 2, 3, 4, 0, None, 5, 6))
    64
    """
    return _TILE_REC.pack(image_id, qk, captured_at_ms, compass, is_pano, organization_id or 0,
                          creator_id, sequence_rowid)


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                           isolation_level=None)
    conn.create_function("wv_tile_rec", 8, tile_rec, deterministic=True)
    # Migration 0017 fills the sequences' lengths with it (math functions are optional).
    conn.create_function("wv_haversine_m", 4, haversine_m, deterministic=True)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA mmap_size = 1073741824")
    conn.execute("PRAGMA temp_store = MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


class Database:
    """An SQLite file with one writer thread and a pool of reader threads.

    `await db.read(fn)` runs `fn(conn)` on a reader thread's own connection; `await db.write(fn)`
    runs it on the single writer thread inside a transaction (committed when `fn` returns,
    rolled back when it raises).

    `db.read_point(fn)` is the one exception to "the event loop never touches sqlite3": it runs
    `fn` at once on a read-only connection of the calling thread. It is for primary-key lookups
    only (a node, a token, a tile epoch, a z14 tile's pack and lines): in WAL mode a reader
    never waits for a writer, the lookup touches a few cached pages (~20 µs; a z14 tile's pack
    is as large as the tile, whose encoding runs on the loop anyway), and the thread round trip
    it avoids costs ~200 µs of CPU (bench/graph.py). With `inline_point_reads=False` it falls back
    to the reader threads.
    """

    def __init__(self, path: Path, *, readers: int = 4, inline_point_reads: bool = True) -> None:
        self.path = Path(path)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wayview-sqlite-w")
        self._readers = ThreadPoolExecutor(max_workers=readers,
                                           thread_name_prefix="wayview-sqlite-r")
        self._local = threading.local()
        self._write_conn: sqlite3.Connection | None = None
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.inline_point_reads = inline_point_reads

    def open(self) -> None:
        """Create the file (0600: it holds e-mail addresses and password hashes) and switch
        it to WAL (synchronous; call before serving)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = _connect(self.path, readonly=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
        # SQLite gives the -wal and -shm files the database's mode; older files are fixed.
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            with contextlib.suppress(FileNotFoundError, PermissionError):
                if part.stat().st_mode & 0o077:
                    part.chmod(0o600)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._write_conn is None:
            self._write_conn = _connect(self.path, readonly=False)
            with self._lock:
                self._all.append(self._write_conn)
        conn = self._write_conn
        with translate_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with translate_errors():
            return fn(self._reader())

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only function on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    async def read_point(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a single-row primary-key lookup inline (see the class docstring)."""
        if not self.inline_point_reads:
            return await self.read(fn)
        return self._run_read(fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a function in a write transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._run_write, fn)

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a write transaction from a non-async caller (migrations at start-up)."""
        return self._writer.submit(self._run_write, fn).result()

    def close(self) -> None:
        """Stop the threads and close every connection."""
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._write_conn = None
