"""The data-export contract (issue #17), on every store backend: the limit of active exports,
the state machine queued → running → done → expired (or failed), owners' listings."""

from __future__ import annotations

import asyncio
import time

from wayview.store import Store


def _now() -> int:
    return int(time.time() * 1000)


async def test_create_export_respects_the_limit_of_active_exports(store: Store) -> None:
    alice = await store.create_user("alice")
    bob = await store.create_user("bob")
    first = await store.create_export(alice.id, max_active=1)
    assert first is not None and first.state == "queued" and first.user_id == alice.id
    assert first.progress == 0 and first.total == 0 and first.blob_key is None
    assert first.created_at_ms > 0
    assert await store.create_export(alice.id, max_active=1) is None
    assert await store.create_export(bob.id, max_active=1) is not None  # per user
    second = await store.create_export(alice.id, max_active=2)
    assert second is not None and second.id > first.id
    assert await store.fail_export(first.id, "boom")
    assert await store.fail_export(second.id, "boom")
    assert await store.create_export(alice.id, max_active=1) is not None  # failed ones free it


async def test_concurrent_requests_cannot_pass_the_limit(store: Store) -> None:
    alice = await store.create_user("alice")
    made = await asyncio.gather(*(store.create_export(alice.id, max_active=2)
                                  for _ in range(8)))
    assert sum(e is not None for e in made) == 2


async def test_export_moves_through_its_states(store: Store) -> None:
    alice = await store.create_user("alice")
    export = await store.create_export(alice.id, max_active=1)
    assert export is not None
    assert await store.start_export(export.id, 0)
    await store.set_export_progress(export.id, 3, 10)
    got = await store.get_export(export.id)
    assert got is not None and (got.state, got.progress, got.total) == ("running", 3, 10)
    # A restarted attempt starts over.
    assert await store.start_export(export.id, 0)
    got = await store.get_export(export.id)
    assert got is not None and (got.progress, got.total) == (0, 0)
    await store.set_export_progress(export.id, 10, 10)
    expires = _now() + 3_600_000
    assert await store.finish_export(export.id, blob_key="private/exports/1.zip",
                                     size_bytes=1234, expires_at_ms=expires)
    done = await store.get_export(export.id)
    assert done is not None and done.state == "done" and done.size_bytes == 1234
    assert done.blob_key == "private/exports/1.zip" and done.expires_at_ms == expires
    assert done.finished_at_ms is not None and done.progress == done.total == 10
    # Nothing moves a finished export back.
    assert not await store.start_export(export.id, 5)
    assert not await store.fail_export(export.id, "late")
    assert not await store.finish_export(export.id, blob_key="x", size_bytes=1,
                                         expires_at_ms=1)
    await store.set_export_progress(export.id, 1, 1)
    assert (await store.get_export(export.id)).progress == 10  # type: ignore[union-attr]
    # Expiry.
    assert await store.exports_to_expire(_now()) == []
    due = await store.exports_to_expire(expires)
    assert [e.id for e in due] == [export.id]
    assert await store.expire_export(export.id)
    assert not await store.expire_export(export.id)
    assert (await store.get_export(export.id)).state == "expired"  # type: ignore[union-attr]
    assert await store.exports_to_expire(expires + 1) == []


async def test_failed_export_keeps_its_reason(store: Store) -> None:
    alice = await store.create_user("alice")
    export = await store.create_export(alice.id, max_active=1)
    assert export is not None
    assert await store.fail_export(export.id, "x" * 5000)
    failed = await store.get_export(export.id)
    assert failed is not None and failed.state == "failed"
    assert failed.error is not None and 100 < len(failed.error) <= 4000
    assert not await store.start_export(export.id, 0)
    assert await store.get_export(999_999_999) is None


async def test_list_exports_is_per_user_newest_first(store: Store) -> None:
    alice = await store.create_user("alice")
    bob = await store.create_user("bob")
    ids = []
    for _ in range(3):
        export = await store.create_export(alice.id, max_active=10)
        assert export is not None
        ids.append(export.id)
    await store.create_export(bob.id, max_active=10)
    assert [e.id for e in await store.list_exports(alice.id)] == ids[::-1]
    assert [e.id for e in await store.list_exports(alice.id, limit=2)] == ids[::-1][:2]
    assert all(e.user_id == bob.id for e in await store.list_exports(bob.id))
