"""wayview.store.postgres.edits: the PostgreSQL implementation of EditsStore."""

from __future__ import annotations

from wayview.store.postgres.connection import Queries


class EditsMixin(Queries):
    """EditsStore on PostgreSQL; `self.db` is the store's Database."""
