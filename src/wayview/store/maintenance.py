"""wayview.store.maintenance: the store's schema status and database snapshots, on either
backend, for operators (`wayview migrate`, `wayview backup`, `wayview restore`).

Nothing here opens a `Store`: the schema status is read without applying migrations, a
snapshot is a file (an SQLite database or a `pg_dump` archive), and a restore writes into a
new data folder or an empty database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from wayview.settings import Settings
from wayview.store import uses_postgres
from wayview.store.migrate import Migration, load_migrations

__all__ = ["SNAPSHOT_FILES", "SchemaStatus", "Snapshot", "backend_of", "check_snapshot",
           "current_media", "restore_snapshot", "schema_status", "snapshot", "status_of",
           "table_counts", "target_is_empty"]

#: The snapshot's file name in a backup, by backend.
SNAPSHOT_FILES = {"sqlite": "wayview.db", "postgresql": "wayview.pgdump"}


def backend_of(settings: Settings) -> str:
    """"postgresql" or "sqlite"."""
    return "postgresql" if uses_postgres(settings) else "sqlite"


def _package(backend: str) -> str:
    return "wayview.store.postgres" if backend == "postgresql" else "wayview.store.sqlite"


@dataclass(frozen=True)
class SchemaStatus:
    """Where a store's schema stands against the migrations this wayview ships."""

    backend: str
    #: The newest applied migration (0: none, or no store yet).
    current: int
    #: The newest migration shipped.
    latest: int
    #: Shipped migrations not applied yet, in order.
    pending: list[Migration] = field(default_factory=list)
    #: Applied versions this wayview does not know (the store was used by a newer release).
    unknown: list[int] = field(default_factory=list)
    exists: bool = True

    def describe(self) -> str:
        """One line for operators.

        >>> m = Migration(18, "0018_x.sql", "")
        >>> SchemaStatus("sqlite", 17, 18, [m]).describe()
        'store schema: sqlite version 17, 1 migration pending: 0018_x.sql'
        >>> SchemaStatus("sqlite", 18, 18).describe()
        'store schema up to date (sqlite version 18)'
        """
        if self.unknown:
            return (f"store schema: {self.backend} version {self.current} is newer than this "
                    f"wayview knows ({self.latest}): migrations "
                    f"{', '.join(map(str, self.unknown))} come from a newer release")
        if not self.pending:
            return f"store schema up to date ({self.backend} version {self.current})"
        names = [m.name for m in self.pending]
        listed = ", ".join(names) if len(names) <= 6 else f"{names[0]} … {names[-1]}"
        where = "" if self.exists else " (no store yet)"
        plural = "migration" if len(names) == 1 else "migrations"
        return (f"store schema: {self.backend} version {self.current}{where}, {len(names)} "
                f"{plural} pending: {listed}")


def status_of(backend: str, applied: set[int] | None) -> SchemaStatus:
    """The status of a store whose applied versions are `applied` (None: no store)."""
    shipped = load_migrations(_package(backend))
    done = applied or set()
    known = {m.version for m in shipped}
    return SchemaStatus(
        backend=backend, current=max(done, default=0),
        latest=max(known, default=0),
        pending=[m for m in shipped if m.version not in done],
        unknown=sorted(done - known), exists=applied is not None)


def schema_status(settings: Settings) -> SchemaStatus:
    """The schema status of the configured store, read without changing anything."""
    backend = backend_of(settings)
    if backend == "postgresql":
        from wayview.store.postgres import maintenance as pg

        return status_of(backend, pg.applied_versions(settings.database_url))
    from wayview.store.sqlite import maintenance as lite

    return status_of(backend, lite.applied_versions(settings.database_path))


@dataclass(frozen=True)
class Snapshot:
    """A database snapshot written by `snapshot`, and what it holds."""

    backend: str
    path: Path
    schema_version: int
    counts: dict[str, int]
    #: (image id, media version) of every image in the snapshot.
    media: list[tuple[int, int]]


def snapshot(settings: Settings, target: Path,
             on_media: Callable[[list[tuple[int, int]]], None] | None = None) -> Snapshot:
    """Write the configured store's database as of one commit into the new file `target`,
    while the server keeps writing (SQLite online backup API, or `pg_dump` in an exported
    snapshot). `on_media` gets the snapshot's `media` as soon as it is known, while the
    snapshot is held (before the database is copied)."""
    backend = backend_of(settings)
    if backend == "postgresql":
        from wayview.store.postgres import maintenance as pg

        taken = pg.dump(settings.database_url, target, on_media)
        return Snapshot(backend, target, max(taken.versions, default=0), taken.counts,
                        taken.media)
    from wayview.store.sqlite import maintenance as lite

    if not settings.database_path.exists():
        from wayview.errors import InvalidInput

        raise InvalidInput(f"no wayview store in {settings.data_dir}")
    lite.snapshot(settings.database_path, target, on_media)
    return Snapshot(backend, target, max(lite.applied_versions(target) or {0}),
                    lite.table_counts(target), lite.media_versions(target))


def check_snapshot(backend: str, path: Path) -> None:
    """Raise InvalidInput unless the snapshot file `path` can be read back."""
    if backend == "postgresql":
        from wayview.store.postgres import maintenance as pg

        pg.list_dump(path)
    else:
        from wayview.store.sqlite import maintenance as lite

        lite.check_file(path)


def target_is_empty(settings: Settings) -> bool:
    """Whether the configured store holds no database yet (no SQLite file in `data_dir`, or
    an empty PostgreSQL database)."""
    if uses_postgres(settings):
        from wayview.store.postgres import maintenance as pg

        return pg.is_empty(settings.database_url)
    return not settings.database_path.exists()


def restore_snapshot(settings: Settings, backend: str, path: Path) -> None:
    """Load a snapshot of `backend` into the configured store, which must be empty."""
    from wayview.errors import InvalidInput

    if backend != backend_of(settings):
        hint = ("restore it into a data folder (no database_url), then copy it with "
                "`wayview migrate-store`" if backend == "sqlite"
                else "set database_url (or --database-url) to an empty PostgreSQL database")
        raise InvalidInput(f"this backup holds a {backend} store: {hint}")
    if backend == "postgresql":
        from wayview.store.postgres import maintenance as pg

        pg.restore(settings.database_url, path)
        return
    from wayview.store.sqlite import maintenance as lite

    lite.restore_file(path, settings.database_path)


def current_media(settings: Settings, ids: list[int]) -> dict[int, int]:
    """The media version of each of `ids` still stored in the configured store."""
    if uses_postgres(settings):
        from wayview.store.postgres import maintenance as pg

        return pg.current_media(settings.database_url, ids)
    from wayview.store.sqlite import maintenance as lite

    return lite.current_media(settings.database_path, ids)


def table_counts(settings: Settings) -> dict[str, int]:
    """Row counts of the main tables of the configured store (see `COUNTED_TABLES`)."""
    if uses_postgres(settings):
        from wayview.store.postgres import maintenance as pg

        return pg.table_counts(settings.database_url)
    from wayview.store.sqlite import maintenance as lite

    return lite.table_counts(settings.database_path)
