"""bench.bulkload: write the bench world with the store's own code, in one big transaction.

Why: through the public path (`reserve_ids` + `insert_sequence`, one WAL transaction per
sequence) 1 M images take 5.6–9 min on the 2-core bench machine, over the 5-minute budget; most
of it is committing ~200 random-id rows per transaction into the table, six-plus secondary
indexes, the R*Tree and the tile index, i.e. rewriting the same B-tree pages thousands of times.

What this path changes, and nothing else:

1. The store is created and migrated by `SqliteStore.open()`; users, organizations, memberships
   and the client app are made through the store's public methods (bench/world.py).
2. `store.db.write` is replaced on that one store object by a function that runs the store's
   own write closure on a single bulk connection *without* BEGIN/COMMIT around it. So
   `reserve_ids` and `insert_sequence` run unchanged (same rows, same `s2_leaf`, same R*Tree and
   tile-index rows, whatever those methods do today) inside one transaction.
3. Before loading, the secondary indexes of `images` are dropped (their `CREATE INDEX` text is
   read from `sqlite_master` first) and recreated from that text afterwards; the journal is an
   in-memory rollback journal with `synchronous = OFF` and a 1 GiB page cache during the load,
   and the file is switched back to WAL at the end.

4. `insert_sequence` leaves the z14 packs (migration 0019) alone during the load: each pack
   rebuild is a range scan of `images_tile`, dropped in 3. They are built once at the end by
   the migration's own statement (`wayview.store.sqlite.tiles.SQL_BUILD_ALL_PACKS`).

The result has the schema and rows the public path gives for the same seed (checked on 20,000
images: every column but the random ids, hashes of ids and creation times is equal). Not done
on purpose: `ANALYZE` (the server never runs it either, so the planner sees what a real store
gives it).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import world

from wayview.settings import Settings
from wayview.store import open_store
from wayview.store.sqlite import store as sqlite_store
from wayview.store.sqlite import tiles as sqlite_tiles

T = TypeVar("T")


async def build(settings: Settings, images: int, seed: int,
                progress: Callable[[int, float], None]) -> dict[str, Any]:
    """Create the world of `world.ensure_world` in one transaction; returns the marker data."""
    rng = np.random.default_rng(seed)
    grids = world._districts(rng)
    store = open_store(settings)
    await store.open()
    try:
        people = await world.create_people(store, rng)
    finally:
        await store.close()  # its threads and connections go; the object stays usable below
    db = store.db  # type: ignore[attr-defined]
    started = time.perf_counter()
    conn = sqlite3.connect(settings.database_path, isolation_level=None,
                           check_same_thread=False)
    try:
        index_sql = [row[0] for row in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'images'"
            " AND sql IS NOT NULL")]
        conn.execute("PRAGMA journal_mode = MEMORY")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -1048576")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN")
        for sql in index_sql:
            name = sql.split("INDEX", 1)[1].split(" ON ", 1)[0].strip()
            conn.execute(f"DROP INDEX {name}")

        async def write(fn: Callable[[sqlite3.Connection], T]) -> T:
            return fn(conn)

        db.write = write  # this store object only: no per-call transaction
        sqlite_store.pack_tiles = lambda conn, qks: None  # built once below
        ids: list[int] = []
        written = 0
        sequences = 0
        for seq, n, make in world.plan_sequences(rng, grids, people, images, seed):
            if len(ids) < n:
                ids += await store.reserve_ids(
                    "image", min(world.ID_BATCH, images - written - len(ids)))
            batch_ids, ids = ids[:n], ids[n:]
            await store.insert_sequence(seq, make(batch_ids))
            before = written
            written += n
            sequences += 1
            if written // 100_000 != before // 100_000:
                progress(written, time.perf_counter() - started)
        t_rows = time.perf_counter() - started
        for sql in index_sql:
            conn.execute(sql)
        conn.execute(sqlite_tiles.SQL_BUILD_ALL_PACKS)
        conn.execute("COMMIT")
        t_index = time.perf_counter() - started
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        db.__dict__.pop("write", None)
        sqlite_store.pack_tiles = sqlite_tiles.pack_tiles
        conn.close()
    elapsed = time.perf_counter() - started
    return {"images": images, "sequences": sequences, "users": world.USERS,
            "organizations": 2, "client_token": people.client_token,
            "generated_s": round(elapsed, 1), "generator_version": world.GENERATOR_VERSION,
            "seed": seed,
            "method": "bench/bulkload.py (the store's insert_sequence in one transaction)",
            "phases_s": {"insert_sequence": round(t_rows, 1),
                         "indexes": round(t_index - t_rows, 1),
                         "wal_switch": round(elapsed - t_index, 1)}}
