"""wayview.store.postgres.exports: the PostgreSQL implementation of ExportsStore."""

from __future__ import annotations

from wayview.store.postgres.connection import Queries


class ExportsMixin(Queries):
    """ExportsStore on PostgreSQL; `self.db` is the store's Database."""
