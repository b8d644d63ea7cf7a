"""wayview.store.sqlite.exports: the SQLite implementation of ExportsStore."""

from __future__ import annotations

from wayview.store.sqlite.connection import Database


class ExportsMixin:
    """ExportsStore on SQLite; `self.db` is the store's Database."""

    db: Database
