"""wayview.store: persistence behind one protocol; `open_store` picks the backend."""

from __future__ import annotations

from wayview.settings import Settings
from wayview.store.base import NODE_KINDS, Store

__all__ = ["NODE_KINDS", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store configured by `settings` (not yet opened: call `await store.open()`)."""
    from wayview.store.sqlite.store import SqliteStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.database_path,
                       inline_point_reads=settings.store_inline_point_reads)
