"""Re-blurring (issue #17): `GET/POST /{image_id}/blurs`, the `reblur` job, versioned media URLs.

An added region is blurred in every served derivative (compared with the private unblurred
original), a removed automatic region is no longer blurred, the Graph URLs change with the
version and the old ones answer 404, a job taken over after a crash finishes the work, and
anyone who may not manage or moderate the image gets E7.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image as PILImage
from tests.conftest import store_backend

from wayview.api.app import direct_asset_url
from wayview.auth.tokens import create_app, issue_user_token
from wayview.blobs import LocalBlobs
from wayview.blobs.base import image_blob_key, private_source_key
from wayview.fixtures import Overlay, make_jpeg
from wayview.ingest.importer import import_paths
from wayview.model.entities import Detection, Image, ImageSearch
from wayview.pipeline import reblur
from wayview.pipeline.blur import Region
from wayview.pipeline.jobs import JobContext
from wayview.pipeline.worker import JobRunner
from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import make_settings

#: Where `CornerBlurrer` finds a "face" (normalised u0, v0, u1, v1).
FACE = (0.1, 0.1, 0.3, 0.3)
#: Where the tests add a region.
ADDED = (0.6, 0.55, 0.9, 0.9)
#: Never blurred.
ELSEWHERE = (0.1, 0.6, 0.35, 0.9)
#: Dark stripes over the whole photo: blurring makes them grey, which is easy to measure.
STRIPES = tuple(Overlay(((u, 0.0), (u + 0.0125, 0.0), (u + 0.0125, 1.0), (u, 1.0)),
                        (10, 10, 10), (10, 10, 10)) for u in np.arange(0.0, 1.0, 0.025))


class CornerBlurrer:
    """A blurrer that finds one face at `FACE` in photos at least 1500 pixels wide, nothing
    in smaller ones (tests only)."""

    name = "corner"

    def detect(self, image: PILImage.Image) -> list[Region]:
        w, h = image.size
        if w < 1500:
            return []
        return [Region(round(FACE[0] * w), round(FACE[1] * h), round((FACE[2] - FACE[0]) * w),
                       round((FACE[3] - FACE[1]) * h), "face")]


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    blurring: dict[str, Any] = {"pipeline": {"blurrer": "tests.api.test_reblur:CornerBlurrer"}}
    if store_backend(request) == "postgres":
        return make_settings(tmp_path, database_url=request.getfixturevalue("pg_database_url"),
                             **blurring)
    return make_settings(tmp_path, **blurring)


class World:
    """An owner with two imported photos (`image` had a face blurred at ingest, `plain`
    nothing), a stranger, a moderator, and their tokens."""

    image: Image
    plain: Image
    token: str
    read_token: str
    other_token: str
    moderator_token: str
    blobs: LocalBlobs


@pytest.fixture
async def world(store: Store, settings: Settings, tmp_path: Path) -> World:
    w = World()
    w.blobs = LocalBlobs(settings.blobs_path)
    owner = await store.create_user("owner")
    other = await store.create_user("other")
    moderator = await store.create_user("mod")
    await store.set_user_role(moderator.id, "moderator")
    app = await create_app(store, "reblur", owner=owner)
    w.token = (await issue_user_token(store, owner, app=app.app)).access_token
    w.read_token = (await issue_user_token(store, owner, app=app.app,
                                           scopes=("read",))).access_token
    w.other_token = (await issue_user_token(store, other, app=app.app)).access_token
    w.moderator_token = (await issue_user_token(store, moderator, app=app.app)).access_token
    folder = tmp_path / "walk"
    folder.mkdir()
    for k, (width, height) in enumerate(((1600, 1200), (1200, 900))):
        (folder / f"{k}.jpg").write_bytes(make_jpeg(
            width=width, height=height, lat=52.52 + 4e-5 * k, lon=13.40, compass_deg=0.0,
            captured_at=datetime(2024, 5, 1, 10, 0, 2 * k, tzinfo=UTC), seed=7 + k,
            overlays=STRIPES))
    await import_paths(store, w.blobs, settings, [folder], username="owner")
    w.image, w.plain = (await store.search_images(ImageSearch(creator_username="owner"))).items
    return w


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


def _pixels(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    with PILImage.open(io.BytesIO(data)) as im:
        rgb = im.convert("L")
        if size is not None and rgb.size != size:
            rgb = rgb.resize(size, PILImage.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.float64)


def _difference(served: bytes, original: bytes, box: tuple[float, float, float, float]
                ) -> float:
    """Mean absolute difference inside `box` (inset a little: the blur's margin and the
    resampling spill over) between a served derivative and the unblurred original."""
    mine = _pixels(served)
    h, w = mine.shape
    theirs = _pixels(original, (w, h))
    u0, v0, u1, v1 = box
    inset = 0.02
    rows = slice(round((v0 + inset) * h), round((v1 - inset) * h))
    cols = slice(round((u0 + inset) * w), round((u1 - inset) * w))
    return float(np.abs(mine[rows, cols] - theirs[rows, cols]).mean())


def _blurred(served: bytes, original: bytes, box: tuple[float, float, float, float]) -> bool:
    difference = _difference(served, original, box)
    assert not 8.0 < difference < 25.0, f"{difference}: neither clearly blurred nor clearly not"
    return difference >= 25.0


async def _drain(settings: Settings, store: Store, blobs: LocalBlobs) -> int:
    return await JobRunner(settings, store, blobs, kinds=(reblur.REBLUR_JOB,)).drain()


async def _thumb_urls(client: httpx.AsyncClient, w: World, image_id: int) -> dict[str, str]:
    r = await client.get(f"/{image_id}", headers=_auth(w.token), params={
        "fields": "thumb_256_url,thumb_1024_url,thumb_2048_url,thumb_original_url"})
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json().items() if k != "id"}


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.get(url.removeprefix(str(client.base_url)))


async def test_reblur_adds_and_removes_regions_under_new_urls(
        client: httpx.AsyncClient, store: Store, settings: Settings, world: World) -> None:
    w = world
    image_id = w.image.id
    source = w.blobs.get_bytes(private_source_key(image_id))  # ingest blurred the face
    (detection_id,) = await store.reserve_ids("detection", 1)
    await store.insert_detections([Detection(
        id=detection_id, image_id=image_id, value="regulatory--stop--g1",
        geometry=(((0.5, 0.1), (0.55, 0.1), (0.55, 0.15), (0.5, 0.15)),),
        created_at_ms=1_700_000_000_000)])
    detections_before = (await client.get(f"/{image_id}/detections",
                                          headers=_auth(w.token))).json()

    r = await client.get(f"/{image_id}/blurs", headers=_auth(w.token))
    assert r.status_code == 200, r.text
    state = r.json()
    assert state["state"] == "live" and state["version"] == state["revision"] == 0
    assert [a["id"] for a in state["automatic"]] == ["a0"]
    assert state["automatic"][0]["kind"] == "face"
    assert state["automatic"][0]["box"] == pytest.approx(list(FACE), abs=2e-3)
    assert state["added"] == [] and state["removed"] == []
    old = await _thumb_urls(client, w, image_id)
    assert all("/v" not in url for url in old.values())
    served = (await _get(client, old["thumb_1024_url"])).content
    assert _blurred(served, source, FACE) and not _blurred(served, source, ADDED)

    # Add a region.
    r = await client.post(f"/{image_id}/blurs", headers=_auth(w.token), json={
        "add": [{"type": "rect", "box": list(ADDED)}], "remove": []})
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "version": 1}
    pending = (await client.get(f"/{image_id}/blurs", headers=_auth(w.token))).json()
    assert pending["state"] == "rendering" and pending["version"] == 0
    assert pending["revision"] == 1
    assert await _thumb_urls(client, w, image_id) == old  # served until the new one is ready
    assert await _drain(settings, store, w.blobs) == 1
    new = await _thumb_urls(client, w, image_id)
    for name, url in new.items():
        assert url != old[name] and "/v1/" in url, name
        assert (await _get(client, old[name])).status_code == 404, name
        got = await _get(client, url)
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        assert "immutable" in got.headers["cache-control"]
        if name != "thumb_256_url":
            assert _blurred(got.content, source, ADDED), name
            assert _blurred(got.content, source, FACE), name
            assert not _blurred(got.content, source, ELSEWHERE), name
    tile = await client.get(f"/media/images/{image_id}/v1/tile_11_0_0.jpg")
    assert tile.status_code == 200
    assert (await client.get(f"/media/images/{image_id}/tile_11_0_0.jpg")).status_code == 404
    # A level rendered on demand comes from the new version too; the old one is gone.
    assert (await client.get(f"/media/images/{image_id}/v1/tile_3_0_0.jpg")).status_code == 200
    assert (await client.get(f"/media/images/{image_id}/tile_3_0_0.jpg")).status_code == 404
    assert (await client.get(f"/media/images/{image_id}/v1/mesh.pbf")).status_code == 404
    live = (await client.get(f"/{image_id}/blurs", headers=_auth(w.token))).json()
    assert live["state"] == "live" and live["version"] == 1
    assert live["added"] == [{"type": "rect", "box": list(ADDED)}]

    # Remove the automatic region (a moderator may, too).
    r = await client.post(f"/{image_id}/blurs", headers=_auth(w.moderator_token),
                          json={"add": [], "remove": ["a0"]})
    assert r.status_code == 200 and r.json() == {"success": True, "version": 2}
    assert await _drain(settings, store, w.blobs) == 1
    latest = await _thumb_urls(client, w, image_id)
    assert all("/v2/" in url for url in latest.values())
    for name in new:
        assert (await _get(client, new[name])).status_code == 404, name
    original = (await _get(client, latest["thumb_original_url"])).content
    assert not _blurred(original, source, FACE) and not _blurred(original, source, ADDED)

    # Blur regions are not detections: detections and map features are as before.
    after = (await client.get(f"/{image_id}/detections", headers=_auth(w.token))).json()
    assert after == detections_before
    # The image that was never re-blurred keeps its unversioned URLs.
    plain = await _thumb_urls(client, w, w.plain.id)
    assert all("/v" not in url for url in plain.values())
    assert (await _get(client, plain["thumb_256_url"])).status_code == 200
    # Each edit is in the audit log.
    entries = [e for e in await store.audit_entries(target=("image", str(image_id)))
               if e.action == "image.reblur"]
    assert len(entries) == 2
    by_version = {e.details["version"]: e for e in entries}
    assert by_version[1].details["added"] == [{"type": "rect", "box": list(ADDED)}]
    assert by_version[1].details["removed"] == []
    assert by_version[2].details["removed"] == ["a0"] and by_version[2].details["added"] == []


async def test_reblurred_image_tiles_carry_the_version(
        client: httpx.AsyncClient, store: Store, settings: Settings, world: World) -> None:
    image_id = world.image.id
    await client.post(f"/{image_id}/blurs", headers=_auth(world.token),
                      json={"add": [{"type": "rect", "box": list(ADDED)}]})
    await _drain(settings, store, world.blobs)
    r = await client.get(f"/{image_id}/tiles", params={"z": "11"}, headers=_auth(world.token))
    urls = [t["url"] for t in r.json()["data"]]
    assert urls and all("/v1/" in u for u in urls)
    assert all([(await _get(client, u)).status_code == 200 for u in urls])


async def test_others_get_e7_and_bad_edits_e9(
        client: httpx.AsyncClient, store: Store, settings: Settings, world: World) -> None:
    w = world
    image_id = w.image.id
    for method in ("GET", "POST"):
        r = await client.request(method, f"/{image_id}/blurs", headers=_auth(w.other_token),
                                 json={"add": []} if method == "POST" else None)
        assert r.status_code == 400 and r.json()["error"]["code"] == 100, method  # E7
        unknown = await client.request(method, "/99999999999/blurs", headers=_auth(w.token),
                                       json={"add": []} if method == "POST" else None)
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == 100
        assert r.json()["error"]["message"].replace(str(image_id), "X") == \
            unknown.json()["error"]["message"].replace("99999999999", "X")
    r = await client.post(f"/{image_id}/blurs", headers=_auth(w.read_token), json={"add": []})
    assert r.status_code == 403  # E6: the write scope
    for body, name in (({"add": [{"type": "rect", "box": [0, 0, 2, 1]}]}, "add"),
                       ({"add": [{"type": "circle"}]}, "add"),
                       ({"add": "nope"}, "add"),
                       ({"remove": ["a7"]}, "remove")):
        r = await client.post(f"/{image_id}/blurs", headers=_auth(w.token), json=body)
        assert r.status_code == 400 and name in r.json()["error"]["message"], body
    assert await store.get_blur_edits(image_id) is not None  # looked at: automatic recorded
    assert (await store.get_blur_edits(image_id)).revision == 0  # type: ignore[union-attr]
    assert await _drain(settings, store, w.blobs) == 0


async def test_polygon_is_blurred_inside_only(
        client: httpx.AsyncClient, store: Store, settings: Settings, world: World) -> None:
    image_id = world.plain.id  # ingest blurred nothing: no private copy yet
    upload = world.blobs.get_bytes(image_blob_key(image_id, "original"))
    triangle = [[0.5, 0.2], [0.9, 0.2], [0.9, 0.6]]
    r = await client.post(f"/{image_id}/blurs", headers=_auth(world.token),
                          json={"add": [{"type": "polygon", "points": triangle}]})
    assert r.status_code == 200, r.text
    await _drain(settings, store, world.blobs)
    assert world.blobs.get_bytes(private_source_key(image_id)) == upload  # kept privately now
    served = world.blobs.get_bytes(image_blob_key(image_id, "original", 1))
    assert _blurred(served, upload, (0.78, 0.25, 0.88, 0.35))  # inside the triangle
    assert not _blurred(served, upload, (0.52, 0.45, 0.62, 0.58))  # its bbox, outside it
    assert not world.blobs.exists(image_blob_key(image_id, "original", 0))


async def test_job_taken_over_after_a_crash_finishes_the_work(
        store: Store, settings: Settings, world: World) -> None:
    blobs = world.blobs
    image = world.image
    owner = await store.get_user_by_username("owner")
    assert owner is not None
    saved = await reblur.edit_blurs(store, blobs, settings.pipeline, image,
                                    [{"type": "rect", "box": list(ADDED)}], [],
                                    actor_id=owner.id)
    [job] = [j for j in await store.list_jobs() if j.kind == reblur.REBLUR_JOB]
    ctx = JobContext(settings, store, blobs, job)
    # A first attempt died after writing some of version 1 and switching: the v0 blobs remain.
    blobs.put_bytes(image_blob_key(image.id, "thumb_256", saved.revision), b"partial")
    assert await store.switch_media_version(image.id, saved.revision)
    assert blobs.exists(image_blob_key(image.id, "thumb_256"))
    await reblur.run_reblur(ctx, dict(job.payload))
    assert not blobs.exists(image_blob_key(image.id, "thumb_256"))
    assert not blobs.exists(image_blob_key(image.id, "original"))
    assert blobs.exists(image_blob_key(image.id, "mesh")) == bool(image.assets & 1)
    # Another died before the switch: rendering again overwrites what it wrote.
    second = await reblur.edit_blurs(store, blobs, settings.pipeline, image,
                                     [], ["a0"], actor_id=owner.id)
    blobs.put_bytes(image_blob_key(image.id, "thumb_256", second.revision), b"partial")
    await reblur.run_reblur(ctx, {"image_id": image.id, "revision": second.revision})
    assert (await store.get_images([image.id]))[image.id].media_version == second.revision
    thumb = blobs.get_bytes(image_blob_key(image.id, "thumb_256", second.revision))
    assert thumb.startswith(b"\xff\xd8")
    assert not blobs.exists(image_blob_key(image.id, "thumb_256", saved.revision))
    # Running either job again changes nothing.
    await reblur.run_reblur(ctx, {"image_id": image.id, "revision": saved.revision})
    await reblur.run_reblur(ctx, {"image_id": image.id, "revision": second.revision})
    assert blobs.get_bytes(image_blob_key(image.id, "thumb_256", second.revision)) == thumb
    # The delayed sweep deletes a tile an on-demand render wrote into a replaced version.
    blobs.put_bytes(image_blob_key(image.id, "tile_3_0_0", saved.revision), b"late")
    blobs.put_bytes(image_blob_key(image.id, "tile_2_0_0", 0), b"late")
    await reblur.run_sweep(ctx, {"image_id": image.id, "below": second.revision})
    assert not blobs.exists(image_blob_key(image.id, "tile_3_0_0", saved.revision))
    assert not blobs.exists(image_blob_key(image.id, "tile_2_0_0", 0))


async def test_an_overtaken_edit_renders_nothing(
        store: Store, settings: Settings, world: World) -> None:
    image = world.image
    await reblur.edit_blurs(store, world.blobs, settings.pipeline, image,
                            [{"type": "rect", "box": [0.1, 0.5, 0.2, 0.6]}], [], actor_id=None)
    await reblur.edit_blurs(store, world.blobs, settings.pipeline, image,
                            [{"type": "rect", "box": list(ADDED)}], [], actor_id=None)
    assert await _drain(settings, store, world.blobs) == 2
    assert (await store.get_images([image.id]))[image.id].media_version == 2
    assert not world.blobs.exists(image_blob_key(image.id, "original", 1))
    assert world.blobs.exists(image_blob_key(image.id, "original", 2))


def test_direct_object_storage_urls_carry_the_version() -> None:
    from wayview.blobs.s3 import S3Blobs

    blobs = S3Blobs("s3://imagery/wv", endpoint_url="http://127.0.0.1:9", serve="public",
                    public_base_url="https://cdn.example")
    url = direct_asset_url(blobs)
    assert url is not None
    assert url(1001, "thumb_256") == "https://cdn.example/images/001/1001/thumb_256.jpg"
    assert url(1001, "thumb_256", 3) == "https://cdn.example/images/001/1001/v3/thumb_256.jpg"
    assert url(1001, "mesh", 3) == "https://cdn.example/images/001/1001/mesh.pbf"



async def test_regions_survive_a_change_of_blurrer(
        store: Store, settings: Settings, world: World) -> None:
    """With `pipeline.blurrer` now "none", what ingest blurred is read from the difference
    between the private and the public original: a re-blur never un-blurs it."""
    none = settings.pipeline.model_copy(update={"blurrer": "none"})
    edits = await reblur.blur_state(store, world.blobs, none, world.image)
    assert edits.automatic is not None and len(edits.automatic) == 1
    u0, v0, u1, v1 = edits.automatic[0].box
    assert u0 <= FACE[0] and v0 <= FACE[1] and u1 >= FACE[2] and v1 >= FACE[3]
    assert u1 - u0 < 0.35 and v1 - v0 < 0.35  # the face and the blur's margin, not more
    plain = await reblur.blur_state(store, world.blobs, none, world.plain)
    assert plain.automatic == ()
