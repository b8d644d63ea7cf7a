"""wayview.store.sqlite.profiles: the SQLite implementation of ProfilesStore.

The figures come from the columns each sequence keeps (`wayview.store.figures`, migration
0017), so a profile reads one row per sequence, never the images: the totals in one
aggregate, the newest sequences (with their first image's position) in a second statement,
both in one read transaction (one snapshot).
"""

from __future__ import annotations

import sqlite3

from wayview.model.profiles import Coverage
from wayview.store.figures import contributors_sql, coverage_from_rows, coverage_sql, owner_of
from wayview.store.sqlite.connection import Database

SQL_COVERAGE = coverage_sql("?")
SQL_CONTRIBUTORS = contributors_sql("?")


def _read(conn: sqlite3.Connection, owner: str, owner_id: int, latest: int,
          starts: int) -> Coverage:
    totals_sql, newest_sql = SQL_COVERAGE[owner]
    conn.execute("BEGIN")
    try:
        totals = conn.execute(totals_sql, (owner_id,)).fetchone()
        rows = conn.execute(newest_sql, (owner_id, max(latest, starts))).fetchall()
    finally:
        conn.execute("COMMIT")
    return coverage_from_rows(totals, rows, latest, starts)


class ProfilesMixin:
    """ProfilesStore on SQLite; `self.db` is the store's Database."""

    db: Database

    async def coverage_of(self, *, creator_id: int | None = None,
                          organization_id: int | None = None, latest: int = 20,
                          starts: int = 1000) -> Coverage:
        """A creator's or an organization's public coverage, from its sequences' rows."""
        owner, owner_id = owner_of(creator_id, organization_id)
        return await self.db.read(lambda c: _read(c, owner, owner_id, latest, starts))

    async def organization_contributors(self, organization_id: int, *, limit: int = 20
                                        ) -> list[tuple[str, int]]:
        """An organization's contributors by public images."""
        rows = await self.db.read(lambda c: c.execute(
            SQL_CONTRIBUTORS, (organization_id, limit)).fetchall())
        return [(str(r[0]), int(r[1])) for r in rows]
