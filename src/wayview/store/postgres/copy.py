"""wayview.store.postgres.copy: copy a whole SQLite store into an empty PostgreSQL store
(`wayview migrate-store`).

Every table is copied row for row in one PostgreSQL transaction (all or nothing), with
`COPY … FROM STDIN`: users, organizations, applications, tokens and codes (their hashes, as
stored), sessions, sequences, images, map features, detections, the tile index, jobs, upload
sessions and finishes, the blob journal (then PostgreSQL's own z14 image packs are built from
the copied images). Columns are matched by name; the few that differ
between the two schemas are mapped explicitly (`_RENAMED`, `_FROM_ROWID`), JSON arrays become
PostgreSQL arrays, integers become booleans where PostgreSQL has booleans, and columns that
PostgreSQL computes itself (geometry, packed tile records) are left to it. A column of the
source that has no place in the target stops the copy before anything is written, so nothing is
silently dropped. Identity counters are moved past the copied ids at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from wayview.errors import InvalidInput
from wayview.store.postgres.tiles import SQL_BUILD_ALL_PACKS
from wayview.store.sqlite.export import SqliteExport

#: Tables in copy order (referenced tables first).
TABLES = (
    "nodes", "users", "organizations", "organization_members", "apps", "tokens", "oauth_codes",
    "web_sessions", "sequences", "images", "map_features", "detections", "tile_epochs",
    "rendered_tiles",
    "tile_overview", "tile_sequence_lines", "tile_overview_computed",
    "tile_sequence_lines_computed", "jobs", "upload_sessions", "upload_finishes",
    "blob_journal", "audit_log", "reports", "exports", "hidden_images", "image_blurs",
)
#: (table, target column) → source column, where the names differ.
_RENAMED = {("images", "sequence_no"): "sequence_rowid"}
#: (table, target column) filled from the source row's rowid.
_FROM_ROWID = {("sequences", "seq_no")}
#: Source columns the target derives itself.
_DERIVED = {("images", "tile_rec"), ("images", "computed_tile_rec")}
_BATCH = 5_000


@dataclass(frozen=True, slots=True)
class TableCount:
    """Rows of one table on both sides after the copy."""

    table: str
    source: int
    target: int

    @property
    def ok(self) -> bool:
        """Whether every row arrived."""
        return self.source == self.target


@dataclass(frozen=True, slots=True)
class _Plan:
    table: str
    target_columns: list[str]
    source_columns: list[str]
    converters: list[Callable[[Any], Any] | None]


def _as_bool(value: Any) -> Any:
    return None if value is None else bool(value)


def _as_array(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _target_columns(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s AND is_generated = 'NEVER'"
        " ORDER BY ordinal_position", (table,)).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _plan(src: SqliteExport, dst: psycopg.Connection[Any], table: str) -> _Plan:
    source_cols = src.columns(table)
    targets = _target_columns(dst, table)
    if not targets:
        raise InvalidInput(f"the target has no table {table!r}: is it a wayview database?")
    select: list[str] = []
    converters: list[Callable[[Any], Any] | None] = []
    used: set[str] = set()
    for name, data_type in targets:
        if (table, name) in _FROM_ROWID:
            select.append("rowid")
        else:
            source = _RENAMED.get((table, name), name)
            if source not in source_cols:
                raise InvalidInput(f"{table}.{name} has no source column: schemas differ")
            select.append(source)
            used.add(source)
        converters.append(_as_bool if data_type == "boolean"
                          else _as_array if data_type == "ARRAY" else None)
    left = [c for c in source_cols if c not in used and (table, c) not in _DERIVED]
    if left:
        raise InvalidInput(f"the target cannot hold {table}.{', '.join(left)}: schemas differ")
    return _Plan(table, [n for n, _ in targets], select, converters)


def _rows(src: SqliteExport, plan: _Plan) -> Iterator[list[Any]]:
    for row in src.rows(plan.table, plan.source_columns):
        yield [conv(v) if conv is not None and v is not None else v
               for conv, v in zip(plan.converters, row, strict=True)]


def _count_target(dst: psycopg.Connection[Any], table: str) -> int:
    row = dst.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def copy_sqlite_to_postgres(
    sqlite_path: Path, postgres_url: str,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[TableCount]:
    """Copy every row of the SQLite store at `sqlite_path` into the (migrated, empty)
    PostgreSQL store at `postgres_url`, in one transaction; the row counts of both sides.

    `progress(table, rows_done_in_table, rows_in_table)` is called as rows go in.

    Raises:
        InvalidInput: the source is not a wayview SQLite store, the target is not empty, or
            the two schemas differ in a way the copy would lose data over.
    """
    src = SqliteExport(sqlite_path)
    try:
        tables = src.tables()
        unknown = sorted(set(tables) - set(TABLES))
        missing = sorted(set(TABLES) - set(tables))
        if missing or unknown:
            raise InvalidInput(
                f"{sqlite_path} is not a wayview store of this version (missing tables "
                f"{missing or 'none'}, unknown tables {unknown or 'none'}); run any wayview "
                "command on it first to migrate it")
        with psycopg.connect(postgres_url) as dst:
            plans = [_plan(src, dst, table) for table in TABLES]
            busy = [t for t in TABLES if _count_target(dst, t)]
            if busy:
                raise InvalidInput(f"the target database is not empty ({', '.join(busy)})")
            for plan in plans:
                total = src.count(plan.table)
                done = 0
                if progress is not None:
                    progress(plan.table, 0, total)
                statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(plan.table),
                    sql.SQL(", ").join(map(sql.Identifier, plan.target_columns)))
                with dst.cursor().copy(statement) as copy:
                    for row in _rows(src, plan):
                        copy.write_row(row)
                        done += 1
                        if progress is not None and done % _BATCH == 0:
                            progress(plan.table, done, total)
                if progress is not None:
                    progress(plan.table, done, total)
            if progress is not None:
                progress("tile_image_packs", 0, 0)
            dst.execute(SQL_BUILD_ALL_PACKS)  # PostgreSQL's own index of z14 tiles
            _advance_identities(dst)
            dst.commit()
            return [TableCount(t, src.count(t), _count_target(dst, t)) for t in TABLES]
    finally:
        src.close()


def _advance_identities(dst: psycopg.Connection[Any]) -> None:
    """Move every identity counter past the largest copied value."""
    rows = dst.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'").fetchall()
    for table, column in rows:
        dst.execute(sql.SQL(
            "SELECT setval(pg_get_serial_sequence({t}, {c}),"
            " coalesce((SELECT max({col}) FROM {tab}), 0) + 1, false)").format(
                t=sql.Literal(table), c=sql.Literal(column), col=sql.Identifier(column),
                tab=sql.Identifier(table)))
