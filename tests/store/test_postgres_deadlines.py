"""PostgreSQL deadlines (issue #22 item 1): a request's database call never waits past its
deadline, a server that stops answering is one outage (logged once at each end) during which
calls fail at once, and the store recovers by itself on a fresh pool."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from wayview.errors import StoreUnavailable
from wayview.store import call_deadline_s
from wayview.store.postgres.connection import Database, Deadlines


async def test_a_request_call_gives_up_at_its_deadline_and_the_store_recovers(
        pg_database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wayview.store")
    db = Database(pg_database_url, pool_size=4)
    await db.open()
    token = call_deadline_s.set(0.5)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            async with db.connection() as conn:
                await conn.execute("SELECT pg_sleep(5)")  # a server that does not answer
        assert time.monotonic() - started < 0.8 and raised.value.logged
        assert db.outage.is_down
        started = time.monotonic()  # known down: refused at once, without a connection
        with pytest.raises(StoreUnavailable):
            async with db.connection() as conn:
                await conn.execute("SELECT 1")
        assert time.monotonic() - started < 0.05
        await asyncio.sleep(db.outage.probe_every_s)
        async with db.connection() as conn:  # the probe connects: a new pool, outage over
            assert await (await conn.execute("SELECT 41 + 1")).fetchone() == (42,)
        assert not db.outage.is_down
    finally:
        call_deadline_s.reset(token)
        await db.close()
    lines = [r for r in caplog.records if r.name == "wayview.store"]
    assert [r.levelname for r in lines] == ["ERROR", "WARNING"]
    assert "unavailable" in lines[0].getMessage() and lines[0].exc_info is None
    assert "available again" in lines[1].getMessage()


async def test_outside_requests_the_statement_timeout_applies_and_is_no_outage(
        pg_database_url: str) -> None:
    db = Database(pg_database_url, pool_size=2, deadlines=Deadlines(statement_s=0.3))
    await db.open()
    try:
        with pytest.raises(StoreUnavailable) as raised:
            async with db.connection() as conn:
                await conn.execute("SELECT pg_sleep(3)")
        assert "statement timeout" in str(raised.value) and not db.outage.is_down
        async with db.connection() as conn:
            row = await (await conn.execute(
                "SELECT current_setting('statement_timeout'),"
                " current_setting('idle_in_transaction_session_timeout')")).fetchone()
        assert row == ("300ms", "1min")
    finally:
        await db.close()


async def test_an_unreachable_server_fails_within_the_deadline(tmp_path) -> None:
    db = Database(f"postgresql://x@/wayview?host={tmp_path}", pool_size=2)
    with pytest.raises(StoreUnavailable):
        await db.open()


async def test_connections_closed_while_idle_are_replaced_without_an_error(
        pg_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from wayview.store.postgres import connection

    monkeypatch.setattr(connection, "IDLE_CHECK_S", 0.1)
    db = Database(pg_database_url, pool_size=3)
    await db.open()
    try:
        async with db.connection() as a, db.connection() as b:
            await a.execute("SELECT 1")
            await b.execute("SELECT 1")
        with psycopg.connect(pg_database_url, autocommit=True) as admin:  # a restart, as
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"  # seen
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        await asyncio.sleep(0.2)
        for _ in range(3):
            async with db.connection() as conn:
                assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        assert not db.outage.is_down
    finally:
        await db.close()


async def test_an_idle_connection_whose_server_hangs_fails_within_the_check_deadline(
        pg_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from wayview.store.postgres import connection

    monkeypatch.setattr(connection, "IDLE_CHECK_S", 0.1)
    db = Database(pg_database_url, pool_size=1)
    await db.open()
    token = call_deadline_s.set(1.0)
    try:
        async with db.connection() as conn:
            backend = (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]
        await asyncio.sleep(0.2)
        os.kill(backend, signal.SIGSTOP)  # this connection's server stops answering
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                async with db.connection() as conn:
                    await conn.execute("SELECT 1")
            assert time.monotonic() - started < connection.IDLE_CHECK_DEADLINE_S + 0.3
            assert db.outage.is_down
        finally:
            os.kill(backend, signal.SIGCONT)
        await asyncio.sleep(db.outage.probe_every_s)
        async with db.connection() as conn:  # a fresh pool
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    finally:
        call_deadline_s.reset(token)
        await db.close()
