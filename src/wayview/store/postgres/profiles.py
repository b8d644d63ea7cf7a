"""wayview.store.postgres.profiles: the PostgreSQL implementation of ProfilesStore.

As SQLite's (`wayview.store.sqlite.profiles`): the totals and the newest sequences from the
columns each sequence keeps (`wayview.store.figures`, migration 0013), in one REPEATABLE READ
transaction (one snapshot).
"""

from __future__ import annotations

from typing import Any

from wayview.model.profiles import Coverage
from wayview.store.figures import contributors_sql, coverage_from_rows, coverage_sql, owner_of
from wayview.store.postgres.connection import Conn, Queries

SQL_COVERAGE = coverage_sql("%s")
SQL_CONTRIBUTORS = contributors_sql("%s")


class ProfilesMixin(Queries):
    """ProfilesStore on PostgreSQL; `self.db` is the store's Database."""

    async def coverage_of(self, *, creator_id: int | None = None,
                          organization_id: int | None = None, latest: int = 20,
                          starts: int = 1000) -> Coverage:
        """A creator's or an organization's public coverage, from its sequences' rows (read
        path: both statements in one snapshot, on a replica when one is usable)."""
        owner, owner_id = owner_of(creator_id, organization_id)
        totals_sql, newest_sql = SQL_COVERAGE[owner]

        async def both(conn: Conn) -> tuple[tuple[Any, ...] | None, list[tuple[Any, ...]]]:
            totals = await (await conn.execute(totals_sql, (owner_id,))).fetchone()
            rows = await (await conn.execute(newest_sql,
                                             (owner_id, max(latest, starts)))).fetchall()
            return totals, rows

        totals, rows = await self.reads.read(both, snapshot=True)
        return coverage_from_rows(totals, rows, latest, starts)

    async def organization_contributors(self, organization_id: int, *, limit: int = 20
                                        ) -> list[tuple[str, int]]:
        """An organization's contributors by public images (read path)."""
        rows = await self._all_read(SQL_CONTRIBUTORS, (organization_id, limit))
        return [(str(r[0]), int(r[1])) for r in rows]
