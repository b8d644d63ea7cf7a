"""wayview.store.postgres.connection: a psycopg 3 async connection pool and error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from collections.abc import Sequence as Seq
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from wayview.errors import Conflict, InvalidInput, StoreUnavailable

#: Seconds `open` waits for the first connection before giving up.
CONNECT_TIMEOUT_S = 30.0
#: Seconds a request waits for a free pooled connection before failing with E17.
CHECKOUT_TIMEOUT_S = 30.0

Conn = psycopg.AsyncConnection[Any]
#: Query parameters: positional (`%s`) or named (`%(name)s`).
Params = Seq[Any] | Mapping[str, Any]


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn psycopg exceptions into domain errors at the store boundary (STYLE rule 7).

    Integrity violations (unique, foreign key, check, not null) become Conflict; values
    PostgreSQL cannot hold (a NUL character in text, a number out of range) InvalidInput; a
    server that cannot be reached, a pool without a free connection, a deadlock or a
    cancelled statement StoreUnavailable. Other errors (bugs in our SQL) pass through.
    """
    try:
        yield
    except psycopg.IntegrityError as exc:
        raise Conflict(str(exc).strip()) from exc
    except psycopg.DataError as exc:
        raise InvalidInput(f"invalid value: {str(exc).strip()}") from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"database error: {str(exc).strip()}") from exc


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

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), open=False,
            kwargs={"autocommit": True}, timeout=CHECKOUT_TIMEOUT_S,
            name="wayview-postgres",
        )

    async def open(self) -> None:
        """Connect once (a clear StoreUnavailable at once when the server cannot be used),
        then open the pool and wait for its first connection."""
        try:
            probe = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            await probe.close()
            await self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            await self.pool.close()
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {redact(self.url)}: {str(exc).strip()}"
            ) from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled autocommit connection."""
        with translate_errors():
            async with self.pool.connection() as conn:
                yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection inside a transaction."""
        with translate_errors():
            async with self.pool.connection() as conn, conn.transaction():
                yield conn

    async def close(self) -> None:
        """Close every connection."""
        await self.pool.close()


class Queries:
    """Base of the store's parts: `self.db` and one-statement helpers."""

    db: Database

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
