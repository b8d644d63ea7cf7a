"""wayview.store.postgres.replicas: reads of API requests on PostgreSQL streaming replicas.

`Replicas.read(fn)` runs `fn(conn)` on a healthy replica (round robin) when called inside an
API request (`call_deadline_s` set), else on the primary. Jobs, commands and every write use
the primary, and so does whatever the store's parts read for authentication, accounts,
uploads and jobs (`Queries._all` / `_one`): only reads routed here on purpose go to a
replica. A replica is skipped, and the read runs on the primary, when

- it is down (one `Outage` per replica: one log line when it goes and one when it is back,
  no traceback; while down a background probe per 0.2 s notices its return), refuses
  connections, or fails the read (a statement cancelled by a recovery conflict too: the read
  is run again on the primary);
- it lags more than `max_lag_s`, or its lag has not been measured recently.

Lag (measured at most once per `STATUS_EVERY_S` per replica, in the background, so no
request waits for it): 0 when the replica has replayed the primary's WAL position read just
before (an idle primary writes no new transactions, so the age of the last replayed one says
nothing then); else the age of the last transaction it replayed, an upper bound of how stale
its answers are. When the primary cannot be asked, a replica that has replayed all it
received counts as caught up.

Within the limit a replica's answers may be up to `max_lag_s` old: a read right after a write
of another request may miss that write. Paths that must see their own writes read the
primary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any, TypeVar

from wayview.errors import StoreUnavailable
from wayview.store.base import call_deadline_s
from wayview.store.postgres.connection import Conn, Database, Deadlines, redact

log = logging.getLogger("wayview.store")

T = TypeVar("T")

#: How long a replica's measured lag is trusted before it is measured again.
STATUS_EVERY_S = 1.0
#: A measurement older than this (a status query that hangs) makes the replica unusable.
STATUS_STALE_S = 3.0
#: Longest a status query (and the primary's WAL position before it) waits.
STATUS_DEADLINE_S = 1.0

SQL_PRIMARY_LSN = "SELECT pg_current_wal_lsn()::text"
#: In recovery; replayed up to the primary's position (NULL when it is unknown); replayed
#: all it received; seconds since the last replayed transaction committed on the primary.
SQL_REPLICA_STATUS = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() >= %s::pg_lsn,"
    " pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(),"
    " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
)


@dataclass(eq=False)
class Replica:
    """One replica: its pool and what was last measured of it."""

    db: Database
    lag_s: float | None = None  # None: never measured, or the last measurement failed
    checked_at: float = float("-inf")  # time.monotonic() of the last measurement
    served: int = 0  # reads it answered
    failed: int = 0  # reads it failed (then answered by the primary)
    lagging: bool = False  # logged as lagging beyond the limit
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Replicas:
    """The read path of a PostgreSQL store: its replicas with the primary as fallback."""

    def __init__(self, primary: Database, urls: Seq[str] = (), *, max_lag_s: float = 5.0,
                 pool_size: int = 10, deadlines: Deadlines | None = None) -> None:
        self.primary = primary
        self.max_lag_s = max_lag_s
        self.replicas = [
            Replica(Database(url, pool_size=pool_size, deadlines=deadlines,
                             what=f"database replica (PostgreSQL) {redact(url)}",
                             effect="reads go to the primary until it is back"))
            for url in urls
        ]
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Connect to every replica; one that cannot be reached is logged as down (reads
        use the primary meanwhile) and never stops the store from opening."""
        for replica in self.replicas:
            try:
                await replica.db.open()
            except StoreUnavailable as exc:
                replica.db.outage.down(str(exc))
            else:
                await self._measure(replica)

    async def close(self) -> None:
        """Stop the measurements under way and close every replica's pool."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, StoreUnavailable):
                pass
        for replica in self.replicas:
            await replica.db.close()

    async def measure(self) -> None:
        """Measure every replica's lag now (reads do it in the background once a second;
        for checks and tests that must not wait for that)."""
        for replica in self.replicas:
            await self._measure(replica)

    async def read(self, fn: Callable[[Conn], Awaitable[T]], *, snapshot: bool = False) -> T:
        """`await fn(conn)` on a replica when one is usable and this is an API request,
        else (or when the replica fails) on the primary.

        With `snapshot` every statement of `fn` sees one snapshot (a REPEATABLE READ, READ
        ONLY transaction; allowed on a hot standby), e.g. a tile epoch and the tile's rows.
        `fn` may run twice (on a replica that fails, then on the primary): it must not write.
        """
        if self.replicas and call_deadline_s.get() is not None:
            replica = self._pick()
            if replica is not None:
                try:
                    result = await _run(replica.db, fn, snapshot)
                except StoreUnavailable:
                    replica.failed += 1  # an outage is logged by its Database
                else:
                    replica.served += 1
                    return result
        return await _run(self.primary, fn, snapshot)

    def _pick(self) -> Replica | None:
        """The next usable replica in turn, or None; starts the measurements that are due."""
        now = time.monotonic()
        count = len(self.replicas)
        chosen = None
        for k in range(count):
            replica = self.replicas[(self._next + k) % count]
            self._measure_if_due(replica, now)
            if chosen is None and self._usable(replica, now):
                chosen = replica
                self._next = (self._next + k + 1) % count
        return chosen

    def _usable(self, replica: Replica, now: float) -> bool:
        return (not replica.db.outage.is_down and replica.lag_s is not None
                and replica.lag_s <= self.max_lag_s
                and now - replica.checked_at < STATUS_STALE_S)

    def _measure_if_due(self, replica: Replica, now: float) -> None:
        every = replica.db.outage.probe_every_s if replica.db.outage.is_down \
            else STATUS_EVERY_S
        if replica.task is not None or now - replica.checked_at < every:
            return
        task = asyncio.get_running_loop().create_task(self._measure(replica))
        replica.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _measure(self, replica: Replica) -> None:
        """Measure `replica`'s lag (a probe of its Database while it is down)."""
        deadline = call_deadline_s.set(STATUS_DEADLINE_S)
        try:
            replica.lag_s = await self.lag_s(replica.db)
        except StoreUnavailable:
            replica.lag_s = None
        finally:
            replica.checked_at = time.monotonic()
            replica.task = None
            call_deadline_s.reset(deadline)
        self._log_lag(replica)

    async def lag_s(self, db: Database) -> float:
        """How stale `db`'s answers may be, in seconds (see the module docstring); inf when
        it never replayed a transaction and is behind the primary."""
        primary_lsn: str | None = None
        try:
            async with self.primary.connection() as conn:
                row = await (await conn.execute(SQL_PRIMARY_LSN)).fetchone()
            primary_lsn = row[0] if row else None
        except StoreUnavailable:
            pass  # the primary's own outage is logged by it; judge the replica alone
        async with db.connection() as conn:
            cur = await conn.execute(SQL_REPLICA_STATUS, (primary_lsn,))
            row = await cur.fetchone()
        assert row is not None
        in_recovery, caught_up, replayed_all, age_s = row
        if not in_recovery or caught_up or (caught_up is None and replayed_all):
            return 0.0
        return float("inf") if age_s is None else max(0.0, float(age_s))

    def _log_lag(self, replica: Replica) -> None:
        lag = replica.lag_s
        if lag is None:
            return
        if lag > self.max_lag_s and not replica.lagging:
            replica.lagging = True
            log.warning("%s lags %.1f s (more than database_replica_max_lag_s = %g s): reads "
                        "go to the primary until it catches up", replica.db.outage.what,
                        lag, self.max_lag_s)
        elif lag <= self.max_lag_s and replica.lagging:
            replica.lagging = False
            log.warning("%s caught up (lag %.1f s)", replica.db.outage.what, lag)

    def status(self) -> list[dict[str, Any]]:
        """What is known of each replica (URLs without passwords), for checks and tests."""
        now = time.monotonic()
        return [{"url": redact(r.db.url), "down": r.db.outage.is_down, "lag_s": r.lag_s,
                 "usable": self._usable(r, now), "served": r.served, "failed": r.failed}
                for r in self.replicas]


async def _run(db: Database, fn: Callable[[Conn], Awaitable[T]], snapshot: bool) -> T:
    if snapshot:
        async with db.transaction() as conn:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return await fn(conn)
    async with db.connection() as conn:
        return await fn(conn)
