"""wayview.store.sqlite.jobs: the SQLite implementation of JobsStore."""

from __future__ import annotations

from wayview.store.sqlite.connection import Database


class JobsMixin:
    """JobsStore on SQLite; `self.db` is the store's Database."""

    db: Database
