"""SQLite specifics: migrations are recorded and idempotent; secrets are never stored in clear."""

from __future__ import annotations

import sqlite3

from wayview.store.migrate import load_migrations
from wayview.store.sqlite.store import SqliteStore
from wayview.testing import seed


async def test_sqlite_migrations_apply_once(tmp_path):
    path = tmp_path / "w.db"
    newest = load_migrations("wayview.store.sqlite")[-1].version
    assert newest >= 2
    for _ in range(2):
        store = SqliteStore(path)
        await store.open()
        assert await store.schema_version() == newest
        await store.close()
    conn = sqlite3.connect(path)
    count = len(load_migrations("wayview.store.sqlite"))
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone() == (count,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_sqlite_no_token_or_secret_in_clear(tmp_path):
    store = SqliteStore(tmp_path / "w.db")
    await store.open()
    world = await seed(store)
    await store.close()
    raw = (tmp_path / "w.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("w.db-*")
    )
    for secret in (world.client_token, world.user_token, world.bob_token):
        assert secret.encode() not in raw


async def test_sqlite_point_reads_inline_or_threaded_agree(tmp_path):
    results = []
    for inline in (True, False):
        store = SqliteStore(tmp_path / f"p{inline}.db", inline_point_reads=inline)
        await store.open()
        world = await seed(store)
        image = world.images[0]
        kind, entity = await store.get_node(image.id)
        assert kind == "image" and entity.id == image.id and entity.creator_username == "alice"
        assert await store.get_node(1933525276802129) is None
        results.append((kind, entity.captured_at_ms))
        await store.close()
    assert results[0] == results[1]
