"""Property test of owners' control of their data (issue #17): random sequences of uploads,
deletions, splits and merges (made through the HTTP API) and of hiding and showing images (as
a moderator does) keep every endpoint and tile in step with a simple model of what the public
should see: which sequences exist, which images each holds in capture order, which are hidden.

After every step: `GET /image_ids` gives each sequence's images in order, `GET /images`
finds each sequence's images, every live image answers `GET /{id}` with its sequence, every
deleted one answers E7, and the z14 `image` layer of both image tilesets holds exactly the
live images (the `sequence` layer only the live sequences).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import httpx
import mapbox_vector_tile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wayview.auth import governance
from wayview.auth.tokens import create_app, issue_user_token
from wayview.blobs import LocalBlobs
from wayview.model.entities import User
from wayview.pipeline.worker import JobRunner
from wayview.store import Store, open_store
from wayview.testing import add_sequence, app_client, make_settings
from wayview.tiles.tilemath import tile_bounds

#: Every image lives inside this z14 tile (Berlin), so one tile shows the whole world.
X, Y = 8802, 5373
WEST, SOUTH, EAST, NORTH = tile_bounds(14, X, Y)

#: An operation: (kind, a, b); a and b pick sequences and images modulo what exists.
OPS = st.lists(st.tuples(st.sampled_from(["upload", "delete", "split", "merge", "hide",
                                          "unhide"]),
                         st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=12)


class Model:
    """What should be visible: sequence → image ids in capture order; the capture times."""

    def __init__(self) -> None:
        self.sequences: dict[str, list[int]] = {}
        self.captured: dict[int, int] = {}
        self.deleted: set[int] = set()
        self.hidden: set[int] = set()

    def shown(self, ids: list[int]) -> list[int]:
        return [i for i in ids if i not in self.hidden]

    def order(self, ids: list[int]) -> list[int]:
        return sorted(ids, key=lambda i: (self.captured[i], i))


async def _upload(store: Store, user: User, model: Model, n: int, k: int) -> None:
    count = 2 + k % 4
    lat = SOUTH + (NORTH - SOUTH) * (0.1 + 0.8 * ((n * 7919) % 97) / 97)
    lon0 = WEST + (EAST - WEST) * 0.1
    points = [(lon0 + j * (EAST - WEST) * 0.05, lat) for j in range(count)]
    # Interleaved capture times, so merges must reorder.
    images = await add_sequence(store, user, points, start_ms=1_600_000_000_000 + n * 500,
                                step_ms=3_000)
    model.sequences[images[0].sequence_id] = [im.id for im in images]
    model.captured.update({im.id: im.captured_at_ms for im in images})


async def _check(client: httpx.AsyncClient, token: str, model: Model) -> None:
    """What the public (a client token) sees."""
    auth = {"Authorization": f"OAuth {token}"}
    live = {i for ids in model.sequences.values() for i in model.shown(ids)}
    for sequence_id, all_ids in model.sequences.items():
        ids = model.shown(all_ids)
        r = await client.get("/image_ids", params={"sequence_id": sequence_id}, headers=auth)
        assert [int(row["id"]) for row in r.json()["data"]] == ids, sequence_id
        r = await client.get("/images", headers=auth, params={
            "sequence_ids": sequence_id, "fields": "id,sequence"})
        rows = r.json()["data"]
        assert sorted(int(row["id"]) for row in rows) == sorted(ids)
        assert {row["sequence"] for row in rows} <= {sequence_id}
    r = await client.get("/", headers=auth, params={
        "ids": ",".join(map(str, sorted(live)[:50])), "fields": "id,sequence"})
    for image_id in sorted(live)[:50]:
        assert r.json()[str(image_id)]["sequence"] in model.sequences
    for image_id in sorted(model.deleted)[:5] + sorted(model.hidden)[:5]:
        r = await client.get(f"/{image_id}", headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == 100
    for tileset in ("mly1_public", "mly1_computed_public"):
        r = await client.get(f"/maps/vtp/{tileset}/2/14/{X}/{Y}",
                             headers={**auth, "Accept-Encoding": "identity"})
        layers = mapbox_vector_tile.decode(r.content) if r.content else {}
        shown = {int(f["properties"]["id"]) for f in layers.get("image", {}).get("features", [])}
        assert shown == live, (tileset, shown ^ live)
        lines = {f["properties"]["id"] for f in layers.get("sequence", {}).get("features", [])}
        drawn = {s for s, ids in model.sequences.items() if model.shown(ids)}
        assert lines <= drawn, (tileset, lines - drawn)


async def _run(tmp: Path, ops: list[tuple[str, int, int]]) -> None:
    cfg = make_settings(tmp)
    store = open_store(cfg)
    await store.open()
    try:
        user = await store.create_user("owner")
        app = await create_app(store, "property", owner=user)
        token = (await issue_user_token(store, user, app=app.app)).access_token
        auth = {"Authorization": f"OAuth {token}"}
        model = Model()
        async with app_client(cfg, store, LocalBlobs(cfg.blobs_path)) as client:
            await _upload(store, user, model, 0, 1)
            for n, (kind, a, b) in enumerate(ops, start=1):
                keys = sorted(model.sequences)
                if kind == "upload" or not keys:
                    await _upload(store, user, model, n, a)
                elif kind == "delete":
                    ids = model.sequences[keys[a % len(keys)]]
                    victim = ids[b % len(ids)]
                    r = await client.delete(f"/{victim}", headers=auth)
                    assert r.json() == {"success": True}
                    ids.remove(victim)
                    model.deleted.add(victim)
                    model.hidden.discard(victim)
                    if not ids:
                        del model.sequences[keys[a % len(keys)]]
                elif kind in ("hide", "unhide"):
                    ids = model.sequences[keys[a % len(keys)]]
                    target = ids[b % len(ids)]
                    await (governance.hide_image if kind == "hide" else
                           governance.unhide_image)(store, None, target)
                    (model.hidden.add if kind == "hide" else model.hidden.discard)(target)
                elif kind == "split":
                    key = keys[a % len(keys)]
                    ids = model.sequences[key]
                    if len(ids) < 2:
                        continue
                    at = 1 + b % (len(ids) - 1)
                    r = await client.post(f"/sequences/{key}/split", headers=auth,
                                          data={"image_id": str(ids[at])})
                    assert r.status_code == 200, r.text
                    model.sequences[r.json()["id"]] = ids[at:]
                    model.sequences[key] = ids[:at]
                else:
                    if len(keys) < 2:
                        continue
                    first, other = keys[a % len(keys)], keys[b % len(keys)]
                    if first == other:
                        continue
                    r = await client.post(f"/sequences/{first}/merge", headers=auth,
                                          data={"sequence_id": other})
                    assert r.status_code == 200, r.text
                    model.sequences[first] = model.order(
                        model.sequences[first] + model.sequences.pop(other))
                await _check(client, app.client_token, model)
            # The jobs the edits queued (blobs, positions, features) change none of it.
            await JobRunner(cfg, store, LocalBlobs(cfg.blobs_path)).drain()
            await _check(client, app.client_token, model)
    finally:
        await store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_random_uploads_deletes_splits_and_merges_match_the_model(
        ops: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(Path(tmp), ops))
