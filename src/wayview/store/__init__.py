"""wayview.store: persistence behind one protocol; `open_store` picks the backend."""

from __future__ import annotations

import contextlib
from pathlib import Path

from wayview.errors import InvalidInput
from wayview.settings import Settings
from wayview.store.base import NODE_KINDS, Store, call_deadline_s

__all__ = ["NODE_KINDS", "POSTGRES_SCHEMES", "Store", "call_deadline_s", "describe_store",
           "open_store", "private_dir", "uses_postgres"]

#: `database_url` prefixes that select the PostgreSQL + PostGIS store.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def uses_postgres(settings: Settings) -> bool:
    """Whether `settings` select the PostgreSQL store (else SQLite in `data_dir`)."""
    return settings.database_url.startswith(POSTGRES_SCHEMES)


def describe_store(settings: Settings) -> str:
    """Where the data lives, for start-up messages (never a password).

    >>> from pathlib import Path
    >>> describe_store(Settings(_env_file=None, data_dir=Path("/srv/w"),
    ...                         database_url="postgresql://me:pw@db/wayview"))
    'PostgreSQL postgresql://me:***@db/wayview, files in /srv/w'
    """
    if uses_postgres(settings):
        from wayview.store.postgres.connection import redact

        replicas = len(settings.database_replica_urls)
        with_replicas = f" (+ {replicas} read replica{'s' if replicas > 1 else ''})" \
            if replicas else ""
        return (f"PostgreSQL {redact(settings.database_url)}{with_replicas}, files in "
                f"{settings.data_dir}")
    return f"SQLite in {settings.data_dir.resolve()}"


def open_store(settings: Settings) -> Store:
    """The store configured by `settings` (not yet opened: call `await store.open()`).

    SQLite in `data_dir` by default; PostgreSQL + PostGIS when `database_url` is a
    `postgresql://` (or `postgres://`) URL. Any other non-empty `database_url` raises
    InvalidInput.
    """
    if uses_postgres(settings):
        from wayview.store.postgres.connection import Deadlines
        from wayview.store.postgres.store import PostgresStore

        return PostgresStore(settings.database_url, pool_size=settings.database_pool_size,
                             deadlines=Deadlines.of(settings),
                             replica_urls=settings.database_replica_urls,
                             replica_max_lag_s=settings.database_replica_max_lag_s)
    if settings.database_url:
        scheme = settings.database_url.partition(":")[0]
        raise InvalidInput(
            f"unsupported database_url scheme {scheme!r}: use postgresql://… or leave it "
            "empty for SQLite in data_dir"
        )
    from wayview.store.sqlite.store import SqliteStore

    private_dir(settings.data_dir)
    return SqliteStore(settings.database_path,
                       inline_point_reads=settings.store_inline_point_reads)


def private_dir(path: Path) -> None:
    """Create `path` (and parents) and make it 0700: the data folder holds the database
    (e-mail addresses, password hashes) and the server secret, for this user only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        with contextlib.suppress(PermissionError):  # not ours: leave it to its owner
            path.chmod(0o700)
