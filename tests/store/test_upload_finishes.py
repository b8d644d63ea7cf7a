"""`finish_upload_session` on every backend (the `store` fixture): the cluster id is a
graph-style id of the shared id space (spec §8.1: 15–16 digits, not a counter), the same for a
repeated finish of one handle, and finishes recorded by earlier versions with counter ids
(1, 2, …) still resolve."""

from __future__ import annotations

import asyncio
import time

from wayview.ids import ID_MAX, ID_MIN
from wayview.store import Store
from wayview.store.postgres.store import PostgresStore


async def _session(store: Store, user_id: int, key: str):  # noqa: ANN202 - UploadSession
    expires = int(time.time() * 1000) + 3_600_000
    return await store.save_upload_session(user_id, key, handle=f"h-{key}", size=10,
                                           expires_at_ms=expires)


async def _execute(store: Store, statement: str, params: tuple[object, ...]) -> None:
    if isinstance(store, PostgresStore):
        async with store.db.transaction() as conn:
            await conn.execute(statement.replace("?", "%s").encode(), params)
    else:
        await store.db.write(lambda c: c.execute(statement, params))


async def test_cluster_ids_are_graph_style_and_stable_per_handle(store):
    user = await store.create_user("uploader")
    a = await _session(store, user.id, "mly_tools_a.zip")
    b = await _session(store, user.id, "mly_tools_b.zip")
    first = await store.finish_upload_session(a, file_type="zip", organization_id=None)
    again = await store.finish_upload_session(a, file_type="zip", organization_id=None)
    other = await store.finish_upload_session(b, file_type="zip", organization_id=None)
    assert ID_MIN <= first.cluster_id <= ID_MAX and len(str(first.cluster_id)) in (15, 16)
    assert again == first and other.cluster_id != first.cluster_id
    assert ID_MIN <= other.cluster_id <= ID_MAX
    # drawn from the one id space (never an image's or user's id), but no Graph node
    assert await store.node_kinds([first.cluster_id, other.cluster_id]) == {
        first.cluster_id: "upload_cluster", other.cluster_id: "upload_cluster"}
    assert await store.get_node(first.cluster_id) is None
    found = await store.get_upload_finish(first.cluster_id)
    assert found is not None and found.handle == "h-mly_tools_a.zip" and found.user_id == user.id


async def test_concurrent_first_finishes_of_one_handle_agree(store):
    user = await store.create_user("uploader")
    session = await _session(store, user.id, "mly_tools_c.zip")
    finishes = await asyncio.gather(*(
        store.finish_upload_session(session, file_type="zip", organization_id=None)
        for _ in range(8)))
    assert len({f.cluster_id for f in finishes}) == 1
    kinds = await store.node_kinds([finishes[0].cluster_id])
    assert kinds == {finishes[0].cluster_id: "upload_cluster"}


async def test_a_finish_with_a_counter_id_from_an_earlier_version_still_works(store):
    user = await store.create_user("uploader")
    session = await _session(store, user.id, "mly_tools_old.zip")
    await _execute(store, "INSERT INTO upload_finishes (id, session_id, user_id, file_type,"
                   " created_at_ms) VALUES (?, ?, ?, ?, ?)"
                   if not isinstance(store, PostgresStore) else
                   "INSERT INTO upload_finishes (id, session_id, user_id, file_type,"
                   " created_at_ms) OVERRIDING SYSTEM VALUE VALUES (?, ?, ?, ?, ?)",
                   (1, session.id, user.id, "zip", 0))
    assert (await store.finish_upload_session(session, file_type="zip",
                                              organization_id=None)).cluster_id == 1
    await store.set_upload_finish_job(1, 7)
    await store.set_upload_result(1, {"state": "done"})
    old = await store.get_upload_finish(1)
    assert old is not None and old.job_id == 7 and old.result == {"state": "done"}
    fresh = await store.finish_upload_session(await _session(store, user.id, "mly_tools_new.zip"),
                                              file_type="zip", organization_id=None)
    assert fresh.cluster_id >= ID_MIN
