"""wayview.store.postgres.governance: the PostgreSQL implementation of GovernanceStore."""

from __future__ import annotations

from wayview.store.postgres.connection import Queries


class GovernanceMixin(Queries):
    """GovernanceStore on PostgreSQL; `self.db` is the store's Database."""
