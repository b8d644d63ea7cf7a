"""wayview.store.sqlite.governance: the SQLite implementation of GovernanceStore."""

from __future__ import annotations

from wayview.store.sqlite.connection import Database


class GovernanceMixin:
    """GovernanceStore on SQLite; `self.db` is the store's Database."""

    db: Database
