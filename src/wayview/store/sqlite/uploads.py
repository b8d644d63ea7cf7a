"""wayview.store.sqlite.uploads: the SQLite implementation of UploadsStore."""

from __future__ import annotations

from wayview.store.sqlite.connection import Database


class UploadsMixin:
    """UploadsStore on SQLite; `self.db` is the store's Database."""

    db: Database
