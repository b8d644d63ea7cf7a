"""Owners delete their images (issue #17, first part): `DELETE /{image_id}` and `wayview delete`.

A deleted image answers like an id that never existed, leaves every search and tile at once,
and its blobs (thumbnails, original, private source, tiles, mesh) and its shot in the
sequence's cluster go in the durable `delete` job.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import mapbox_vector_tile
from click.testing import CliRunner

from wayview.blobs import LocalBlobs
from wayview.blobs.base import cluster_blob_key, image_blob_key
from wayview.cli import cli
from wayview.fixtures import make_jpeg
from wayview.ingest.importer import import_paths
from wayview.model.entities import ImageSearch
from wayview.pipeline.sfm_assets import decode_cluster
from wayview.pipeline.worker import JobRunner
from wayview.settings import Settings
from wayview.store import Store, open_store
from wayview.testing import Seeded, make_settings
from wayview.tiles.index import IMAGE_ZOOM
from wayview.tiles.tilemath import lnglat_to_tile


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


async def _tile_ids(client: httpx.AsyncClient, token: str, tileset: str, lon: float,
                    lat: float) -> set[int]:
    x, y = lnglat_to_tile(lon, lat, IMAGE_ZOOM)
    r = await client.get(f"/maps/vtp/{tileset}/2/{IMAGE_ZOOM}/{x}/{y}",
                         headers={**_auth(token), "Accept-Encoding": "identity"})
    assert r.status_code == 200
    if not r.content:
        return set()
    layers = mapbox_vector_tile.decode(r.content)
    return {int(f["properties"]["id"]) for f in layers.get("image", {}).get("features", [])}


async def test_owner_deletes_an_image_and_it_is_gone_everywhere_at_once(
        client: httpx.AsyncClient, seeded: Seeded, settings: Settings, store: Store) -> None:
    sequence = next(iter(seeded.sequences.values()))
    victim, kept = sequence[1], sequence[0]
    path = f"/{victim.id}"
    for tileset in ("mly1_public", "mly1_computed_public"):
        assert victim.id in await _tile_ids(client, seeded.client_token, tileset, victim.lon,
                                            victim.lat)
    never = await client.get("/4999999999999999", headers=_auth(seeded.client_token))
    assert never.status_code == 400 and never.json()["error"]["code"] == 100  # E7
    # Not the owner, or a client token: as if the image did not exist / not allowed.
    r = await client.delete(path, headers=_auth(seeded.bob_token))
    assert r.status_code == 400 and r.json()["error"]["code"] == 100
    r = await client.delete(path, headers=_auth(seeded.client_token))
    assert r.status_code == 400 and r.json()["error"]["code"] == 100  # E7, as for a GET-only node
    assert (await client.get(path, headers=_auth(seeded.client_token))).status_code == 200
    # The owner.
    r = await client.delete(path, headers=_auth(seeded.user_token))
    assert r.status_code == 200 and r.json() == {"success": True}
    gone = await client.get(path, headers=_auth(seeded.client_token))
    assert gone.status_code == never.status_code
    assert gone.json()["error"]["code"] == never.json()["error"]["code"]
    r = await client.get("/images", headers=_auth(seeded.client_token),
                         params={"sequence_ids": victim.sequence_id, "fields": "id"})
    assert [row["id"] for row in r.json()["data"]] != [] and str(victim.id) not in {
        row["id"] for row in r.json()["data"]}
    for tileset in ("mly1_public", "mly1_computed_public"):
        ids = await _tile_ids(client, seeded.client_token, tileset, victim.lon, victim.lat)
        assert victim.id not in ids
    assert kept.id in await _tile_ids(client, seeded.client_token, "mly1_public", kept.lon,
                                      kept.lat)
    again = await client.delete(path, headers=_auth(seeded.user_token))
    assert again.status_code == 400 and again.json()["error"]["code"] == 100
    # The durable job (blobs, features) runs and is done.
    assert await JobRunner(settings, store, LocalBlobs(settings.blobs_path)).drain() >= 1
    jobs = [j for j in await store.list_jobs() if j.kind == "delete"]
    assert jobs and all(j.state == "done" for j in jobs)


def _walk(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True)
    start = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    for k in range(count):
        (folder / f"{k:02d}.jpg").write_bytes(make_jpeg(
            width=640, height=480, lat=52.52 + 4e-5 * k, lon=13.40, compass_deg=0.0,
            captured_at=start + timedelta(seconds=2 * k), seed=k))
    return folder


def test_wayview_delete_removes_blobs_and_cluster_shots(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    blobs = LocalBlobs(settings.blobs_path)

    async def setup() -> list[int]:
        store = open_store(settings)
        await store.open()
        try:
            await store.create_user("owner")
            report = await import_paths(store, blobs, settings, [_walk(tmp_path / "w")],
                                        username="owner")
            page = await store.search_images(ImageSearch(sequence_ids=(report.sequences[0].id,)))
            return sorted(im.id for im in page.items)
        finally:
            await store.close()

    ids = asyncio.run(setup())
    runner = CliRunner()
    data = ["--data-dir", str(settings.data_dir)]
    sequence = asyncio.run(_sequence_of(settings, ids[0]))
    assert blobs.exists(image_blob_key(ids[0], "thumb_1024"))
    dry = runner.invoke(cli, ["delete", "--image", str(ids[0]), "--json", *data])
    assert dry.exit_code == 0 and json.loads(dry.stdout) == {"images": 1, "deleted": False}
    assert blobs.exists(image_blob_key(ids[0], "thumb_1024"))
    done = runner.invoke(cli, ["delete", "--image", str(ids[0]), "--yes", "--json", *data])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["images"] == 1
    for variant in ("thumb_256", "thumb_1024", "thumb_2048", "original", "mesh"):
        assert not blobs.exists(image_blob_key(ids[0], variant)), variant
    assert not any((settings.blobs_path / "private").rglob(f"{ids[0]}/*"))
    [cluster] = decode_cluster(blobs.get_bytes(cluster_blob_key(sequence)))
    assert str(ids[0]) not in cluster["shots"] and str(ids[1]) in cluster["shots"]
    whole = runner.invoke(cli, ["delete", "--sequence", sequence, "--yes", "--json", *data])
    assert whole.exit_code == 0, whole.output
    assert json.loads(whole.stdout)["sequences_emptied"] == [sequence]
    assert not blobs.exists(cluster_blob_key(sequence))
    assert not any(blobs.exists(image_blob_key(i, "thumb_256")) for i in ids)
    assert asyncio.run(_sequence_of(settings, ids[1])) is None
    usage = runner.invoke(cli, ["delete", *data])
    assert usage.exit_code == 2


async def _sequence_of(settings: Settings, image_id: int) -> str | None:
    store = open_store(settings)
    await store.open()
    try:
        found = await store.get_images([image_id])
        return found[image_id].sequence_id if image_id in found else None
    finally:
        await store.close()


def test_a_delete_job_whose_requester_died_does_everything_and_runs_twice(
        tmp_path: Path) -> None:
    """The requester queued the job and was killed before it deleted the rows: the job
    deletes rows and blobs itself; taken over again (a second SIGKILL), it is a no-op."""
    from wayview.pipeline.delete import DELETE_JOB, run_deletion

    settings = make_settings(tmp_path)
    blobs = LocalBlobs(settings.blobs_path)

    async def run() -> tuple[int, int, bool]:
        store = open_store(settings)
        await store.open()
        try:
            await store.create_user("owner")
            report = await import_paths(store, blobs, settings, [_walk(tmp_path / "w", 2)],
                                        username="owner")
            sequence = report.sequences[0].id
            page = await store.search_images(ImageSearch(sequence_ids=(sequence,)))
            ids = sorted(im.id for im in page.items)
            await store.enqueue_job(DELETE_JOB, {"image_ids": ids, "sequence_ids": [sequence]})
            ran = await JobRunner(settings, store, blobs, kinds=(DELETE_JOB,)).drain()
            left = len(await store.get_images(ids))
            again = await run_deletion(settings.pipeline, store, blobs, ids, [sequence])
            return ran, left, again.images == 0 and not blobs.exists(cluster_blob_key(sequence))
        finally:
            await store.close()

    assert asyncio.run(run()) == (1, 0, True)
    assert not any(settings.blobs_path.rglob("thumb_*.jpg"))
