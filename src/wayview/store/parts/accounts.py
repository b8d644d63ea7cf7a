"""wayview.store.parts.accounts: the accounts part of the Store protocol."""

from __future__ import annotations

from typing import Protocol


class AccountsStore(Protocol):
    """Persistence for accounts. Every backend implements it; methods return model objects."""
