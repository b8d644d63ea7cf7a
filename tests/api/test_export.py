"""Users download all of their data (issue #17, export): `POST /me/exports`, progress,
download, the zip's originals byte for byte and its metadata against the Graph answers, other
users, expiry, a crashed attempt taken over, the web page and `wayview export`."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from tests.api.webforms import csrf_of, sign_up
from tests.s3_server import S3Server, s3_server

from wayview.auth.tokens import create_app, issue_user_token
from wayview.blobs import LocalBlobs
from wayview.blobs.base import BlobStore, export_blob_key, private_source_key
from wayview.blobs.s3 import S3Blobs
from wayview.cli import cli
from wayview.fixtures import make_jpeg
from wayview.ingest.importer import import_paths
from wayview.model.entities import Detection, ImageSearch, User
from wayview.pipeline import export as export_pipeline
from wayview.pipeline.export import DETECTION_FIELDS, IMAGE_FIELDS, expire_due_exports
from wayview.pipeline.worker import JobRunner
from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import app_client, make_settings, open_test_store

START = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


def _photos(folder: Path, count: int, *, lat0: float = 52.52, seed: int = 0) -> list[bytes]:
    folder.mkdir(parents=True)
    out = []
    for k in range(count):
        data = make_jpeg(width=320, height=240, lat=lat0 + 4e-5 * k, lon=13.40, compass_deg=0.0,
                         captured_at=START + timedelta(seconds=2 * k), seed=seed + k)
        (folder / f"{k:02d}.jpg").write_bytes(data)
        out.append(data)
    return out


class World:
    """An owner with two imported sequences (one with an unblurred private copy and a
    detection), another user, and their tokens."""

    owner: User
    other: User
    token: str
    read_token: str
    other_token: str
    client_token: str
    uploaded: dict[int, bytes]
    sequences: list[str]
    blobs: Any


async def _world(store: Store, settings: Settings, tmp_path: Path,
                 blobs: Any = None) -> World:
    w = World()
    w.blobs = blobs if blobs is not None else LocalBlobs(settings.blobs_path)
    w.owner = await store.create_user("owner")
    w.other = await store.create_user("other")
    app = await create_app(store, "exporter", owner=w.owner)
    w.client_token = app.client_token
    w.token = (await issue_user_token(store, w.owner, app=app.app)).access_token
    w.read_token = (await issue_user_token(store, w.owner, app=app.app,
                                           scopes=("read",))).access_token
    w.other_token = (await issue_user_token(store, w.other, app=app.app)).access_token
    photos = _photos(tmp_path / "walk1", 4) + _photos(tmp_path / "walk2", 3, lat0=52.60,
                                                       seed=10)
    for folder in ("walk1", "walk2"):
        await import_paths(store, w.blobs, settings, [tmp_path / folder], username="owner")
    await import_paths(store, w.blobs, settings, [_walk_of_other(tmp_path)], username="other")
    page = await store.search_images(ImageSearch(creator_username="owner"))
    assert len(page.items) == 7
    by_hash = {hashlib.sha256(p).hexdigest(): p for p in photos}
    w.uploaded = {im.id: by_hash[im.content_sha256] for im in page.items}
    w.sequences = sorted({im.sequence_id for im in page.items})
    # One photo had a face blurred: its unblurred upload is the private source.
    first = page.items[0]
    w.uploaded[first.id] = b"\xff\xd8unblurred upload of " + str(first.id).encode() + b"\xff\xd9"
    w.blobs.put_bytes(private_source_key(first.id), w.uploaded[first.id])
    (detection_id,) = await store.reserve_ids("detection", 1)
    await store.insert_detections([Detection(
        id=detection_id, image_id=page.items[1].id, value="regulatory--stop--g1",
        geometry=(((0.1, 0.1), (0.3, 0.1), (0.3, 0.3), (0.1, 0.3)),),
        created_at_ms=1_700_000_000_000)])
    return w


def _walk_of_other(tmp_path: Path) -> Path:
    _photos(tmp_path / "other", 2, lat0=52.70, seed=50)
    return tmp_path / "other"


async def _drain(settings: Settings, store: Store, blobs: BlobStore) -> None:
    await JobRunner(settings, store, blobs, kinds=("export",)).drain()


async def test_export_start_progress_download_and_contents(
        client: httpx.AsyncClient, store: Store, settings: Settings, tmp_path: Path) -> None:
    w = await _world(store, settings, tmp_path)
    # Scope and token kind: only a user token with `write`.
    r = await client.post("/me/exports", headers=_auth(w.read_token))
    assert r.status_code == 403 and "write" in r.json()["error"]["message"]  # E6
    r = await client.post("/me/exports", headers=_auth(w.client_token))
    assert r.status_code in (401, 403) and "error" in r.json()
    r = await client.post("/me/exports", headers=_auth(w.token))
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["state"] == "queued" and "download_url" not in started
    export_id = started["id"]
    # One at a time (export.max_concurrent_per_user = 1).
    again = await client.post("/me/exports", headers=_auth(w.token))
    assert again.status_code == 400 and "queued or running" in again.json()["error"]["message"]
    # Others: as if it did not exist.
    for path in (f"/me/exports/{export_id}", f"/me/exports/{export_id}/download"):
        r = await client.get(path, headers=_auth(w.other_token))
        assert r.status_code == 400 and r.json()["error"]["code"] == 100, path  # E7
    assert (await client.get("/me/exports", headers=_auth(w.other_token))).json() == {"data": []}
    not_yet = await client.get(f"/me/exports/{export_id}/download", headers=_auth(w.token))
    assert not_yet.status_code == 400 and "queued" in not_yet.json()["error"]["message"]

    seen: list[tuple[int, int]] = []
    real_progress = store.set_export_progress

    async def spy(export_id: int, progress: int, total: int) -> None:
        seen.append((progress, total))
        await real_progress(export_id, progress, total)

    store.set_export_progress = spy  # type: ignore[method-assign]
    await _drain(settings, store, w.blobs)
    del store.set_export_progress
    assert seen[0] == (0, 7) and seen[-1] == (7, 7)
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)

    r = await client.get(f"/me/exports/{export_id}", headers=_auth(w.token))
    done = r.json()
    assert done["state"] == "done" and done["progress"] == done["total"] == 7
    assert done["size"] > 0 and done["expires_at"] > done["finished_at"]
    assert done["download_url"] == f"{settings.base_url}/me/exports/{export_id}/download"
    listed = (await client.get("/me/exports", headers=_auth(w.token))).json()["data"]
    assert [e["id"] for e in listed] == [export_id]
    [entry] = [e for e in await store.audit_entries(actor_id=w.owner.id)
               if e.action == "account.export"]
    assert entry.target_kind == "user" and entry.target_id == str(w.owner.id)
    assert entry.details == {"export_id": int(export_id)}

    r = await client.get(f"/me/exports/{export_id}/download", headers=_auth(w.token))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert "attachment" in r.headers["content-disposition"]
    assert "no-store" in r.headers["cache-control"]
    assert len(r.content) == done["size"]
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.testzip() is None
    await _check_zip(client, w, zf)


async def _check_zip(client: httpx.AsyncClient, w: World, zf: zipfile.ZipFile) -> None:
    names = set(zf.namelist())
    assert {"README.txt", "manifest.json", "metadata/images.json", "metadata/images.geojson",
            "metadata/sequences.json", "metadata/sequences.geojson",
            "metadata/detections.json"} <= names
    # Originals: byte for byte what was uploaded (the unblurred private copy where one is).
    originals = {n: zf.read(n) for n in names if n.startswith("originals/")}
    assert len(originals) == 7
    for name, data in originals.items():
        _, sequence_id, file = name.split("/")
        image_id = int(file.removesuffix(".jpg"))
        assert sequence_id in w.sequences and data == w.uploaded[image_id], name
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["user"] == {"id": str(w.owner.id), "username": "owner"}
    assert manifest["counts"] == {"images": 7, "sequences": 2, "detections": 1,
                                  "unblurred_uploads": 1, "served_originals": 6,
                                  "missing_originals": 0}
    # Metadata: every image as the Graph API serves it.
    images = json.loads(zf.read("metadata/images.json"))
    assert {int(o["id"]) for o in images} == set(w.uploaded)
    for obj in images:
        r = await client.get(f"/{obj['id']}", params={"fields": IMAGE_FIELDS},
                             headers=_auth(w.client_token))
        assert r.status_code == 200 and r.json() == obj
    geo = json.loads(zf.read("metadata/images.geojson"))
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == 7
    by_id = {o["id"]: o for o in images}
    for feature in geo["features"]:
        obj = by_id[feature["id"]]
        assert feature["geometry"] == obj["geometry"]
        assert feature["properties"]["file"] == (
            f"originals/{obj['sequence']}/{obj['id']}.jpg")
        assert feature["properties"]["captured_at"] == obj["captured_at"]
    sequences = json.loads(zf.read("metadata/sequences.json"))
    assert sorted(s["id"] for s in sequences) == w.sequences
    for sequence in sequences:
        r = await client.get("/image_ids", params={"sequence_id": sequence["id"]},
                             headers=_auth(w.client_token))
        assert sequence["image_ids"] == [row["id"] for row in r.json()["data"]]
    lines = json.loads(zf.read("metadata/sequences.geojson"))
    assert {f["geometry"]["type"] for f in lines["features"]} == {"LineString"}
    detections = json.loads(zf.read("metadata/detections.json"))
    assert len(detections) == 1
    image_id = detections[0]["image"]["id"]
    r = await client.get(f"/{image_id}/detections", params={"fields": DETECTION_FIELDS},
                         headers=_auth(w.client_token))
    assert [{**d, "image": {"id": image_id}} for d in r.json()["data"]] == detections
    assert "originals/" in zf.read("README.txt").decode()


async def test_export_expires_and_its_zip_is_deleted(
        client: httpx.AsyncClient, store: Store, settings: Settings, tmp_path: Path) -> None:
    w = await _world(store, settings, tmp_path)
    export_id = (await client.post("/me/exports", headers=_auth(w.token))).json()["id"]
    await _drain(settings, store, w.blobs)
    key = export_blob_key(w.owner.id, int(export_id))
    assert w.blobs.exists(key)
    # The expiry job is queued for later; nothing expires before its time.
    expire_jobs = [j for j in await store.list_jobs() if j.kind == "export_expire"]
    assert len(expire_jobs) == 1 and expire_jobs[0].run_after_ms > time.time() * 1000 + 3.5e6
    assert await expire_due_exports(store, w.blobs) == 0
    later = int(time.time() * 1000) + int(settings.export.ttl_hours * 3_600_000) + 1000
    assert await expire_due_exports(store, w.blobs, now_ms=later) == 1
    assert not w.blobs.exists(key)
    r = await client.get(f"/me/exports/{export_id}", headers=_auth(w.token))
    assert r.json()["state"] == "expired" and "download_url" not in r.json()
    r = await client.get(f"/me/exports/{export_id}/download", headers=_auth(w.token))
    assert r.status_code == 400 and "expired" in r.json()["error"]["message"]
    # A new export may be made.
    assert (await client.post("/me/exports", headers=_auth(w.token))).status_code == 200


async def test_overdue_export_is_expired_by_the_listing(
        client: httpx.AsyncClient, store: Store, settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"export": settings.export.model_copy(
        update={"ttl_hours": 1e-6})})
    w = await _world(store, settings, tmp_path)
    async with app_client(settings, store, w.blobs) as c:
        export_id = (await c.post("/me/exports", headers=_auth(w.token))).json()["id"]
        await _drain(settings, store, w.blobs)
        time.sleep(0.01)
        [listed] = (await c.get("/me/exports", headers=_auth(w.token))).json()["data"]
    assert listed["id"] == export_id and listed["state"] == "expired"
    assert not w.blobs.exists(export_blob_key(w.owner.id, int(export_id)))


class _Crashing:
    """A blob store whose reads of originals die after `after` of them (a killed worker)."""

    def __init__(self, inner: LocalBlobs, after: int) -> None:
        self.inner = inner
        self.after = after

    def local_path(self, key: str) -> Path | None:
        if key.endswith("original.jpg"):
            self.after -= 1
            if self.after < 0:
                raise OSError("worker killed")
        return self.inner.local_path(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_crashed_attempt_starts_over_and_the_retry_finishes(
        store: Store, settings: Settings, tmp_path: Path) -> None:
    w = await _world(store, settings, tmp_path)
    export = await export_pipeline.request_export(store, w.blobs, settings, w.owner,
                                                  actor_id=None)
    with pytest.raises(OSError, match="worker killed"):
        await export_pipeline.produce_export(settings, store, _Crashing(w.blobs, 3),
                                             export.id)
    crashed = await store.get_export(export.id)
    assert crashed is not None and crashed.state == "running" and crashed.total == 7
    assert not w.blobs.exists(export_blob_key(w.owner.id, export.id))
    # What a SIGKILL would leave behind: the dead attempt's work folder.
    leftover = settings.data_dir / "work" / "exports" / str(export.id)
    leftover.mkdir(parents=True, exist_ok=True)
    (leftover / "export.zip").write_bytes(b"half a zip")
    report = await export_pipeline.produce_export(settings, store, w.blobs, export.id)
    assert report is not None and report.images == 7
    assert not leftover.exists()
    done = await store.get_export(export.id)
    assert done is not None and done.state == "done" and done.progress == 7
    with zipfile.ZipFile(w.blobs.local_path(done.blob_key or "")) as zf:
        assert zf.testzip() is None
        assert len([n for n in zf.namelist() if n.startswith("originals/")]) == 7
    # Running it again (a job taken over after it finished) changes nothing.
    assert await export_pipeline.produce_export(settings, store, w.blobs, export.id) is None


async def test_web_page_starts_shows_progress_and_downloads(
        store: Store, settings: Settings, tmp_path: Path) -> None:
    blobs = LocalBlobs(settings.blobs_path)
    async with app_client(settings, store, blobs) as c, app_client(settings, store, blobs) as o:
        assert (await c.get("/account/export")).status_code == 303  # sign in first
        await sign_up(c, "walker")
        _photos(tmp_path / "walk", 3)
        await import_paths(store, blobs, settings, [tmp_path / "walk"], username="walker")
        page = await c.get("/account/export")
        assert page.status_code == 200 and "Export all my data" in page.text
        assert "script-src 'nonce-" in page.headers["content-security-policy"]
        account = await c.get("/account")
        assert 'href="/account/export"' in account.text
        # No CSRF token: refused.
        assert (await c.post("/account/export", data={})).status_code == 403
        r = await c.post("/account/export", data={"csrf_token": csrf_of(page.text)})
        assert r.status_code == 303
        page = await c.get(r.headers["location"])
        assert "<progress" in page.text and "has started" in page.text
        export_id = page.text.split('data-export-id="')[1].split('"')[0]
        status = (await c.get(f"/account/export/{export_id}/status")).json()
        assert status["state"] == "queued"
        await _drain(settings, store, blobs)
        status = (await c.get(f"/account/export/{export_id}/status")).json()
        assert status["state"] == "done" and status["progress"] == status["total"] == 3
        assert status["download_url"].endswith(f"/account/export/{export_id}/download")
        page = await c.get("/account/export")
        assert f'href="/account/export/{export_id}/download"' in page.text
        zip_bytes = (await c.get(f"/account/export/{export_id}/download")).content
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
            assert len([n for n in zf.namelist() if n.startswith("originals/")]) == 3
        # Another signed-in user sees nothing of it.
        await sign_up(o, "stranger")
        for what in ("status", "download"):
            assert (await o.get(f"/account/export/{export_id}/{what}")).status_code == 404


def test_wayview_export_writes_a_zip_for_operators(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    blobs = LocalBlobs(settings.blobs_path)
    photos = _photos(tmp_path / "walk", 3)

    async def setup() -> None:
        async with open_test_store(settings) as store:
            await store.create_user("owner")
            await import_paths(store, blobs, settings, [tmp_path / "walk"], username="owner")

    asyncio.run(setup())
    out = tmp_path / "owner.zip"
    data = ["--data-dir", str(settings.data_dir)]
    r = CliRunner().invoke(cli, ["export", "--user", "owner", "--output", str(out), "--json",
                                 *data])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["images"] == 3 and summary["output"] == str(out)
    assert summary["size_bytes"] == out.stat().st_size
    with zipfile.ZipFile(out) as zf:
        stored = sorted(zf.read(n) for n in zf.namelist() if n.startswith("originals/"))
    assert stored == sorted(photos)
    missing = CliRunner().invoke(cli, ["export", "--user", "nobody", "--output",
                                       str(tmp_path / "x.zip"), *data])
    assert missing.exit_code != 0 and "nobody" in missing.output
    exists = CliRunner().invoke(cli, ["export", "--user", "owner", "--output", str(out), *data])
    assert exists.exit_code != 0 and "exists" in exists.output


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


async def test_export_on_s3_streams_through_wayview_or_redirects_to_a_presigned_url(
        s3: S3Server, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    options = {"endpoint_url": s3.endpoint_url, "access_key_id": s3.access_key_id,
               "secret_access_key": s3.secret_access_key}
    proxied = S3Blobs(f"s3://{s3.bucket}/{prefix}", **options)  # type: ignore[arg-type]
    signed = S3Blobs(f"s3://{s3.bucket}/{prefix}", serve="presigned",
                     **options)  # type: ignore[arg-type]
    async with open_test_store(settings) as store:
        w = await _world(store, settings, tmp_path, proxied)
        async with app_client(settings, store, proxied) as client:
            export_id = (await client.post("/me/exports", headers=_auth(w.token))).json()["id"]
            await _drain(settings, store, proxied)
            key = export_blob_key(w.owner.id, int(export_id))
            assert proxied.exists(key) and proxied.local_path(key) is None
            r = await client.get(f"/me/exports/{export_id}/download", headers=_auth(w.token))
            assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
            assert int(r.headers["content-length"]) == len(r.content)
            streamed = r.content
        with zipfile.ZipFile(io.BytesIO(streamed)) as zf:
            for name in (n for n in zf.namelist() if n.startswith("originals/")):
                assert zf.read(name) == w.uploaded[int(name.rsplit("/", 1)[1][:-4])]
        async with app_client(settings, store, signed) as client:
            r = await client.get(f"/me/exports/{export_id}/download", headers=_auth(w.token))
            assert r.status_code == 302 and "X-Amz-Signature=" in r.headers["location"]
            assert httpx.get(r.headers["location"]).content == streamed
        later = int(time.time() * 1000) + int(settings.export.ttl_hours * 3_600_000) + 1000
        assert await expire_due_exports(store, proxied, now_ms=later) == 1
        assert not proxied.exists(key)
