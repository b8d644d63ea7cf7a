"""wayview.store.sqlite.edits: the SQLite implementation of EditsStore."""

from __future__ import annotations

from wayview.store.sqlite.connection import Database


class EditsMixin:
    """EditsStore on SQLite; `self.db` is the store's Database."""

    db: Database
