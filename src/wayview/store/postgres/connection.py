"""wayview.store.postgres.connection: a psycopg 3 async connection pool, its deadlines and
error mapping.

Deadlines (issue #22: a request during an outage gets a fast 503, never a hang):

- every pooled connection has a server-side `statement_timeout` and
  `idle_in_transaction_session_timeout`, a libpq `connect_timeout` and TCP keepalives;
- a database call inside an API request (`call_deadline_s` set) waits at most that long for
  a pooled connection and its answer together: when the deadline passes, the connection's
  socket is shut down (a server that stopped answering, SIGSTOP or a dead host, would
  otherwise be waited for forever; asyncio cancellation would wait for psycopg's own cancel
  round trip) and the call fails with StoreUnavailable;
- a failure that means the server is gone starts an outage (`wayview.logs.Outage`: one log
  line at its start and one at its end): while it lasts calls fail at once, and one call
  per 0.2 s probes with a fresh connection; when a probe connects the pool is replaced by a
  new one, whose connections come up at once (the old pool's reconnection backoff grows to
  seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from collections.abc import Sequence as Seq
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolClosed

from wayview.errors import Conflict, InvalidInput, StoreUnavailable
from wayview.logs import Outage
from wayview.store.base import call_deadline_s

if TYPE_CHECKING:
    from wayview.settings import Settings
    from wayview.store.postgres.replicas import Replicas

log = logging.getLogger("wayview.store")

#: Seconds `open` waits for the first connection before giving up.
CONNECT_TIMEOUT_S = 30.0
#: SQLSTATEs that mean the server went away (class 08: connection exception; 57P01–57P03:
#: shut down, crashed, not accepting connections yet). A client-side failure (no SQLSTATE:
#: a broken socket, a connect that failed) means the same.
_GONE_STATES = ("57P01", "57P02", "57P03")
#: A pooled connection idle for longer is checked (an empty query) before it is lent: a
#: server restarted meanwhile closed it, and the request would fail on it.
IDLE_CHECK_S = 1.0
#: Longest that check waits for the server.
IDLE_CHECK_DEADLINE_S = 0.5


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How long the store waits for PostgreSQL (the `database_*_timeout_s` settings)."""

    connect_s: int = 2
    checkout_s: float = 2.0
    statement_s: float = 30.0
    idle_in_transaction_s: float = 60.0

    @classmethod
    def of(cls, settings: Settings) -> Deadlines:
        """The deadlines `settings` ask for."""
        return cls(connect_s=settings.database_connect_timeout_s,
                   checkout_s=settings.database_checkout_timeout_s,
                   statement_s=settings.database_statement_timeout_s,
                   idle_in_transaction_s=settings.database_idle_in_transaction_timeout_s)

    def connect_kwargs(self, url: str) -> dict[str, Any]:
        """libpq parameters of every pooled connection (a URL's own `options` are kept).

        >>> Deadlines().connect_kwargs("postgresql:///w?options=-c%20search_path%3Dx")["options"]
        '-c search_path=x -c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000'
        """
        options = str(conninfo_to_dict(url).get("options") or "")
        for name, seconds in (("statement_timeout", self.statement_s),
                              ("idle_in_transaction_session_timeout",
                               self.idle_in_transaction_s)):
            options += f" -c {name}={int(seconds * 1000)}"
        return {"autocommit": True, "connect_timeout": self.connect_s,
                "options": options.strip(), "keepalives": 1, "keepalives_idle": 10,
                "keepalives_interval": 5, "keepalives_count": 3}


def _server_gone(exc: psycopg.OperationalError) -> bool:
    """Whether `exc` means the server cannot be reached (not a slow or conflicting query)."""
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _GONE_STATES


def _sever(conn: Conn) -> None:
    """Shut down `conn`'s socket: the call waiting on it fails at once (the server is not
    asked anything; the pool discards the broken connection)."""
    with contextlib.suppress(OSError):
        fd = conn.pgconn.socket
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()

Conn = psycopg.AsyncConnection[Any]
#: Query parameters: positional (`%s`) or named (`%(name)s`).
Params = Seq[Any] | Mapping[str, Any]


@contextmanager
def translate_errors(outage: Outage | None = None) -> Iterator[None]:
    """Turn psycopg exceptions into domain errors at the store boundary (STYLE rule 7).

    Integrity violations (unique, foreign key, check, not null) become Conflict; values
    PostgreSQL cannot hold (a NUL character in text, a number out of range) InvalidInput; a
    server that cannot be reached, a pool without a free connection, a deadlock or a
    cancelled statement StoreUnavailable (a server that is gone also starts an `outage`).
    Other errors (bugs in our SQL) pass through.
    """
    try:
        yield
    except psycopg.IntegrityError as exc:
        raise Conflict(str(exc).strip()) from exc
    except psycopg.DataError as exc:
        raise InvalidInput(f"invalid value: {str(exc).strip()}") from exc
    except psycopg.OperationalError as exc:
        error = StoreUnavailable(f"database error: {str(exc).strip()}")
        if outage is not None and _server_gone(exc):
            outage.down(exc)
            error.logged = True
        raise error from exc


#: The numpy dtype of the packed tile records (`images.tile_rec`, migration 0001):
#: big-endian int64, as PostgreSQL's `int8send` writes them.
TILE_REC_DTYPE = ">i8"


def redact(url: str) -> str:
    """`url` without its password, for error messages.

    >>> redact("postgresql://me:s3cret@db.example:5432/wayview")
    'postgresql://me:***@db.example:5432/wayview'
    >>> redact("postgresql:///wayview?host=/run/postgresql")
    'postgresql:///wayview?host=/run/postgresql'
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


class Database:
    """A pool of autocommit connections to one PostgreSQL database.

    `async with db.connection() as conn` lends a connection for single statements (each its
    own implicit transaction: no BEGIN/COMMIT round trips); `async with db.transaction() as
    conn` lends one inside a transaction, committed when the block ends and rolled back when
    it raises.
    Both map driver errors to domain errors. Nothing here blocks the event loop.
    """

    def __init__(self, url: str, *, pool_size: int = 10,
                 deadlines: Deadlines | None = None, what: str = "database (PostgreSQL)",
                 effect: str = "answering 503 until it is back") -> None:
        self.url = url
        self.pool_size = max(1, pool_size)
        self.deadlines = deadlines or Deadlines()
        self._kwargs = self.deadlines.connect_kwargs(url)
        self.outage = Outage(log, what, effect=effect,
                             probe_timeout_s=float(self.deadlines.connect_s))
        self.pool = self._new_pool()
        self._retired: set[asyncio.Task[None]] = set()
        self._idle_since: weakref.WeakKeyDictionary[Conn, float] = weakref.WeakKeyDictionary()

    def _new_pool(self) -> AsyncConnectionPool[Conn]:
        return AsyncConnectionPool(
            self.url, min_size=1, max_size=self.pool_size, open=False, kwargs=self._kwargs,
            timeout=self.deadlines.checkout_s, name="wayview-postgres",
        )

    async def open(self) -> None:
        """Connect once (a clear StoreUnavailable at once when the server cannot be used),
        then open the pool and wait for its first connection."""
        try:
            probe = await psycopg.AsyncConnection.connect(self.url, **self._kwargs)
            await probe.close()
            await self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            await self.pool.close()
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {redact(self.url)}: {str(exc).strip()}"
            ) from exc

    async def _through_outage(self, deadline: float | None) -> None:
        """During an outage: fail at once, or probe with a fresh connection and, when the
        server answers, end the outage on a new pool."""
        if not self.outage.is_down:
            return
        if not self.outage.attempt():
            raise _known_outage()
        limit = min(deadline or self.deadlines.checkout_s, float(self.deadlines.connect_s))
        try:
            async with asyncio.timeout(limit):
                probe = await psycopg.AsyncConnection.connect(self.url, **self._kwargs)
            await probe.execute("SELECT 1")
            await probe.close()
        except (psycopg.OperationalError, TimeoutError) as exc:
            self.outage.down(exc)
            raise _known_outage() from None
        if not self.outage.is_down:
            return  # another probe ended the outage meanwhile (and replaced the pool)
        old, self.pool = self.pool, self._new_pool()
        await self.pool.open(wait=False)
        task = asyncio.get_running_loop().create_task(old.close(timeout=1.0))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)
        self.outage.up()

    async def _checkout(self, timeout: float | None) -> tuple[AsyncConnectionPool[Conn], Conn]:
        """A connection and the pool it came from; a pool replaced (at the end of an outage)
        while this call waited for it is left for the new one, and a connection idle for
        more than IDLE_CHECK_S is checked first (a server restarted meanwhile closed it)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            pool = self.pool
            left = None if timeout is None else max(0.001, timeout - (loop.time() - started))
            try:
                conn = await pool.getconn(timeout=left)
            except PoolClosed:
                if self.pool is pool:
                    raise
                continue
            try:
                alive = await self._alive(conn)
            except BaseException:
                await pool.putconn(conn)
                raise
            if alive:
                return pool, conn
            await pool.putconn(conn)  # broken: the pool discards it and opens another

    async def _alive(self, conn: Conn) -> bool:
        """Whether a connection that sat idle still works (one empty query); recently used
        ones are trusted. A server that does not answer the check within
        IDLE_CHECK_DEADLINE_S raises OperationalError (an outage, not a stale connection)."""
        idle_since = self._idle_since.pop(conn, None)
        if idle_since is None or time.monotonic() - idle_since < IDLE_CHECK_S:
            return True
        severed: list[bool] = []

        def sever() -> None:
            severed.append(True)
            _sever(conn)

        watchdog = asyncio.get_running_loop().call_later(IDLE_CHECK_DEADLINE_S, sever)
        try:
            await conn.execute("")
        except psycopg.OperationalError as exc:
            if severed:
                raise psycopg.OperationalError(
                    f"no answer within {IDLE_CHECK_DEADLINE_S:g} s") from exc
            return False
        finally:
            watchdog.cancel()
        return True

    @asynccontextmanager
    async def _lend(self, *, transaction: bool) -> AsyncIterator[Conn]:
        deadline = call_deadline_s.get()
        await self._through_outage(deadline)
        loop = asyncio.get_running_loop()
        started = loop.time()
        watchdog: asyncio.TimerHandle | None = None
        severed: list[bool] = []

        def sever(conn: Conn) -> None:
            severed.append(True)
            _sever(conn)

        with translate_errors(self.outage):
            pool, conn = await self._checkout(deadline)
            try:
                if deadline is not None:
                    remaining = max(0.0, deadline - (loop.time() - started))
                    watchdog = loop.call_later(remaining, sever, conn)
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
            except psycopg.OperationalError as exc:
                if severed:
                    raise psycopg.OperationalError(f"no answer within {deadline:g} s") from exc
                raise
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                self._idle_since[conn] = time.monotonic()
                await pool.putconn(conn)
        self.outage.up()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled autocommit connection."""
        async with self._lend(transaction=False) as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection inside a transaction."""
        async with self._lend(transaction=True) as conn:
            yield conn

    async def close(self) -> None:
        """Close every connection."""
        await self.pool.close()
        for task in list(self._retired):
            await task


def _known_outage() -> StoreUnavailable:
    """The error of a call refused during an outage already logged."""
    error = StoreUnavailable("database unavailable")
    error.logged = True
    return error


class Queries:
    """Base of the store's parts: `self.db` and one-statement helpers."""

    db: Database
    #: The read path: a replica when one is usable inside an API request, else `db`.
    reads: Replicas

    async def _all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Every row of one statement."""
        async with self.db.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def _one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row of one statement, or None."""
        async with self.db.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

    async def _run(self, sql: str, params: Params = ()) -> int:
        """Execute one statement on its own (autocommit); the number of rows it changed."""
        async with self.db.connection() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    async def _all_read(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Every row of one statement, on a replica when one is usable (`Replicas.read`):
        only for reads that may be up to `database_replica_max_lag_s` old."""
        async def fetch(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

        return await self.reads.read(fetch)

    async def _one_read(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row of one statement, or None, on a replica when one is usable."""
        async def fetch(conn: Conn) -> tuple[Any, ...] | None:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

        return await self.reads.read(fetch)
