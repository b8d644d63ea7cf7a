"""The figures each sequence keeps for the public profiles (`wayview.store.figures`): the
migration that adds them (SQLite 0017, PostgreSQL 0013) fills a store written before it with
exactly what the writers maintain, hidden images left out. Every backend (the `store`
fixture)."""

from __future__ import annotations

from importlib import resources

from wayview.store import Store
from wayview.store.figures import FIGURE_COLUMNS
from wayview.store.postgres.store import PostgresStore
from wayview.testing import seed

_MIGRATIONS = {"sqlite": ("wayview.store.sqlite", "0017_sequence_figures.sql"),
               "postgres": ("wayview.store.postgres", "0013_sequence_figures.sql")}


def _backfill(backend: str) -> str:
    """The migration's UPDATE statement (it fills the figures of stored sequences)."""
    package, name = _MIGRATIONS[backend]
    text = resources.files(package).joinpath("migrations", name).read_text("utf-8")
    (update,) = [s for s in text.split(";") if "UPDATE sequences" in s]
    return "\n".join(line for line in update.splitlines() if not line.startswith("--"))


async def _execute(store: Store, statement: str) -> None:
    if isinstance(store, PostgresStore):
        async with store.db.transaction() as conn:
            await conn.execute(statement.encode())
    else:
        await store.db.write(lambda c: c.execute(statement))


async def test_the_migration_fills_what_the_writers_maintain(store):
    seeded = await seed(store)
    images = seeded.images
    await store.set_hidden([images[0].id, images[3].id], True)
    owners = [{"creator_id": seeded.alice.id}, {"creator_id": seeded.bob.id},
              {"organization_id": seeded.org.id}]
    maintained = [await store.coverage_of(**owner) for owner in owners]
    assert maintained[0].image_count == 13
    # As a store written before the migration: no figures at all.
    await _execute(store, "UPDATE sequences SET image_count = 0, length_m = 0, "
                   + ", ".join(f"{c} = NULL" for c in FIGURE_COLUMNS[2:]))
    assert (await store.coverage_of(creator_id=seeded.alice.id)).image_count == 0
    backend = "postgres" if isinstance(store, PostgresStore) else "sqlite"
    await _execute(store, _backfill(backend))
    filled = [await store.coverage_of(**owner) for owner in owners]
    for before, after in zip(maintained, filled, strict=True):
        assert after.image_count == before.image_count
        assert after.sequence_count == before.sequence_count
        assert abs(after.length_m - before.length_m) < 1e-6
        assert [(s.id, s.image_count, s.first_image_id, s.bbox) for s in after.latest] == [
            (s.id, s.image_count, s.first_image_id, s.bbox) for s in before.latest]
        assert after.bbox == before.bbox
        assert (after.first_captured_at_ms, after.last_captured_at_ms) == (
            before.first_captured_at_ms, before.last_captured_at_ms)
