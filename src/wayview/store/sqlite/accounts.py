"""wayview.store.sqlite.accounts: the SQLite implementation of AccountsStore."""

from __future__ import annotations

from wayview.store.sqlite.connection import Database


class AccountsMixin:
    """AccountsStore on SQLite; `self.db` is the store's Database."""

    db: Database
