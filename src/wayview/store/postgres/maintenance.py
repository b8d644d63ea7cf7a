"""wayview.store.postgres.maintenance: schema status, online dumps and restores of the
PostgreSQL store (`wayview migrate --check`, `wayview backup`, `wayview restore`).

A dump is `pg_dump --format=custom` run in a snapshot this module exports from a REPEATABLE
READ transaction (`pg_export_snapshot`): the dump, the row counts and the list of images whose
media the backup must hold all see the database as of one commit, while the server goes on
writing. `pg_dump` and `pg_restore` get the connection parameters as a libpq connection string
without the password; the password travels in their environment (PGPASSWORD), never on a
command line or in a message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from wayview.errors import InvalidInput, StoreUnavailable
from wayview.store.postgres.connection import redact

__all__ = ["COUNTED_TABLES", "Dump", "applied_versions", "current_media", "dump", "is_empty",
           "list_dump", "restore", "table_counts"]

#: Tables whose row counts a backup manifest records (and a restore compares).
COUNTED_TABLES = ("users", "organizations", "apps", "tokens", "sequences", "images",
                  "map_features", "detections", "jobs", "upload_sessions", "exports")

#: Tables an empty database may already hold (PostGIS creates this one).
_EXTENSION_TABLES = ("spatial_ref_sys",)


@dataclass(frozen=True)
class Dump:
    """What one `dump` saw, all in the same snapshot."""

    versions: set[int]
    counts: dict[str, int]
    media: list[tuple[int, int]]


def _client_env(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string without the password, and the environment carrying it."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ}
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None}), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise StoreUnavailable(f"{name} not found on PATH (Debian: apt-get install "
                               "postgresql-client, the same major version as the server)")
    return found


@contextmanager
def _connect(url: str) -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(url, connect_timeout=30)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot connect to {redact(url)}: {str(exc).strip()}") from None
    try:
        yield conn
    finally:
        conn.close()


def _versions(conn: psycopg.Connection[Any]) -> set[int]:
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
        return set()
    return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}


def _tables(conn: psycopg.Connection[Any]) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def _counts(conn: psycopg.Connection[Any], present: set[str]) -> dict[str, int]:
    counts = {}
    for table in COUNTED_TABLES:
        if table in present:
            got = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(table))).fetchone()
            counts[table] = int(got[0]) if got else 0
    return counts


def table_counts(url: str) -> dict[str, int]:
    """Rows of each `COUNTED_TABLES` table in the database at `url`."""
    with _connect(url) as conn:
        return _counts(conn, _tables(conn))


def current_media(url: str, ids: list[int]) -> dict[int, int]:
    """The media version of each of `ids` still stored in the database at `url`."""
    with _connect(url) as conn:
        return {int(r[0]): int(r[1]) for r in conn.execute(
            "SELECT id, media_version FROM images WHERE id = ANY(%s)", (ids,))}


def applied_versions(url: str) -> set[int]:
    """The migration versions recorded in the database at `url` (empty: none yet)."""
    with _connect(url) as conn:
        return _versions(conn)


def is_empty(url: str) -> bool:
    """Whether the database at `url` holds no table (but those of extensions)."""
    with _connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN"
            " ('pg_catalog', 'information_schema') AND NOT tablename = ANY(%s)",
            (list(_EXTENSION_TABLES),)).fetchone()
    return row is not None and int(row[0]) == 0


def dump(url: str, target: Path,
         on_media: Callable[[list[tuple[int, int]]], None] | None = None) -> Dump:
    """Dump the database at `url` into the new file `target` (custom format, mode 0600) as of
    one commit, while other connections keep writing; what the snapshot held. `on_media` is
    called with (image id, media version) of every image of the snapshot before the dump
    starts."""
    conninfo, env = _client_env(url)
    pg_dump = _tool("pg_dump")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    with _connect(url) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        versions = _versions(conn)
        present = _tables(conn)
        counts = _counts(conn, present)
        media = [(int(r[0]), int(r[1])) for r in conn.execute(
            "SELECT id, media_version FROM images")] if "images" in present else []
        if on_media is not None:
            on_media(media)
        # The exporting transaction stays open until pg_dump has taken the snapshot over.
        done = subprocess.run(
            [pg_dump, "--format=custom", "--no-owner", "--no-privileges",
             f"--snapshot={row[0]}", f"--file={target}", f"--dbname={conninfo}"],
            env=env, capture_output=True, text=True, check=False)
        conn.rollback()
    if done.returncode != 0:
        raise StoreUnavailable(f"pg_dump failed: {_last_line(done.stderr)}")
    return Dump(versions, counts, media)


def restore(url: str, source: Path) -> None:
    """Load the dump `source` into the empty database at `url`, in one transaction (all or
    nothing); refuses a database that holds tables."""
    if not is_empty(url):
        raise InvalidInput(f"the database {redact(url)} is not empty: restore into a new "
                           "database (CREATE DATABASE …)")
    conninfo, env = _client_env(url)
    done = subprocess.run(
        [_tool("pg_restore"), "--single-transaction", "--exit-on-error", "--no-owner",
         "--no-privileges", "--no-comments", f"--dbname={conninfo}", str(source)],
        env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StoreUnavailable(f"pg_restore failed: {_last_line(done.stderr)}")


def list_dump(source: Path) -> None:
    """Raise InvalidInput unless `pg_restore --list` can read the dump `source`."""
    done = subprocess.run([_tool("pg_restore"), "--list", str(source)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise InvalidInput(f"{source.name} is not a readable pg_dump archive: "
                           f"{_last_line(done.stderr)}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
