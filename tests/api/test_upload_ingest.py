"""The `ingest.upload` job: finished uploads (zip, manifest, CAMM video) become one sequence each,
safely (zip-slip, bombs, non-images, corrupt JPEGs) and idempotently."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.helpers_video import add_camm_track, encode_video

from wayview.blobs import LocalBlobs
from wayview.fixtures import build_map_description, make_jpeg
from wayview.ingest.upload_finish import INGEST_JOB
from wayview.model.entities import Image, ImageSearch
from wayview.pipeline.jobs import JobContext, handler_for
from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import Seeded

START = datetime(2021, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)
LAT0, LON0 = 55.70470, 13.19100


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


def photo(k: int, *, width: int = 320, height: int = 240, pano: bool = False) -> bytes:
    """A JPEG as mapillary_tools uploads it: EXIF plus the MAP* ImageDescription."""
    lat, lon = LAT0 + k * 0.00001, LON0 + k * 0.00005
    captured = START + timedelta(seconds=k)
    desc = build_map_description(lat=lat, lon=lon, captured_at=captured, compass_deg=80.0 + k,
                                 altitude_m=30.0 + k, make="AcmeCam", model="X-100")
    return make_jpeg(width=width, height=height, lat=lat, lon=lon, captured_at=captured,
                     compass_deg=80.0 + k, make="AcmeCam", model="X-100", map_description=desc,
                     seed=k, label=str(k), pano=pano)


def zip_of(members: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data,
                        compress_type=compression)
        zf.comment = b'{"sequence_md5sum":"0"}'
    return buf.getvalue()


async def upload(client: httpx.AsyncClient, token: str, key: str, data: bytes) -> str:
    r = await client.post(f"/upload/{key}", content=data,
                          headers={**auth(token), "Offset": "0"})
    assert r.status_code == 200, r.text
    return str(r.json()["h"])


async def finish(client: httpx.AsyncClient, token: str, handle: str, file_type: str,
                 **extra: Any) -> int:
    r = await client.post("/finish_upload", headers=auth(token),
                          json={"file_handle": handle, "file_type": file_type, **extra})
    assert r.status_code == 200, r.text
    return int(r.json()["cluster_id"])


async def run_job(settings: Settings, store: Store, cluster_id: int) -> dict[str, Any]:
    """Run the pending ingest job of a finish the way a worker would; its stored result."""
    job = await store.enqueue_job(INGEST_JOB, {"cluster_id": cluster_id},
                                  dedupe_key=f"{INGEST_JOB}:{cluster_id}")  # the pending one
    handler = handler_for(INGEST_JOB)
    assert handler is not None
    await handler(JobContext(settings=settings, store=store,
                             blobs=LocalBlobs(settings.blobs_path), job=job), job.payload)
    stored = await store.get_upload_finish(cluster_id)
    assert stored is not None and stored.result is not None
    return stored.result


async def sequence_images(store: Store, sequence_id: str) -> list[Image]:
    page = await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))
    return sorted(page.items, key=lambda im: (im.captured_at_ms, im.id))


async def test_zip_upload_becomes_one_sequence_in_capture_order(client, store, settings,
                                                                seeded: Seeded):
    order = [3, 0, 4, 1, 2]  # entry order differs from capture order
    data = zip_of([(f"{n}.jpg", photo(k)) for n, k in enumerate(order)])
    handle = await upload(client, seeded.user_token, "mly_tools_seq.zip", data)
    cluster = await finish(client, seeded.user_token, handle, "zip",
                           organization_id=str(seeded.org.id))
    result = await run_job(settings, store, cluster)
    assert result["state"] == "done" and result["imported"] == 5, result
    assert result["dropped"] == [] and len(result["sequences"]) == 1
    images = await sequence_images(store, result["sequences"][0]["id"])
    assert len(images) == 5
    for k, image in enumerate(images):
        assert abs(image.lat - (LAT0 + k * 0.00001)) < 1e-6
        assert abs(image.lon - (LON0 + k * 0.00005)) < 1e-6
        assert image.captured_at_ms == 1_619_863_200_500 + k * 1000
        assert image.compass_angle_deg == pytest.approx(80.0 + k)
        assert (image.make, image.model) == ("AcmeCam", "X-100")
        assert image.creator_id == seeded.alice.id
        assert image.organization_id == seeded.org.id

    # A retried job and a second upload of the same images add nothing.
    assert await run_job(settings, store, cluster) == result
    again = await upload(client, seeded.user_token, "mly_tools_seq_again.zip", data)
    repeat = await run_job(settings, store,
                           await finish(client, seeded.user_token, again, "zip"))
    assert repeat["imported"] == 0 and repeat["dropped_count"] == 5
    assert {d["reason"] for d in repeat["dropped"]} == {"already imported"}
    assert await store.count_images() == len(seeded.images) + 5


async def test_manifest_upload_follows_its_handles(client, store, settings, seeded: Seeded):
    handles = [await upload(client, seeded.user_token, f"mly_tools_{k}.jpg", photo(k))
               for k in range(3)]
    corrupt = await upload(client, seeded.user_token, "mly_tools_corrupt.jpg",
                           photo(9)[:2000])  # cut off mid-scan
    manifest = json.dumps({"image_handles": [*handles[:2], corrupt, handles[2]],
                           "upload_type": "images", "version": "1"},
                          sort_keys=True, separators=(",", ":")).encode()
    m = await upload(client, seeded.user_token, "uuid_1.json", manifest)
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, m, "mly_bundle_manifest"))
    # The corrupt image is dropped with its reason; the rest of the sequence is processed.
    assert result["imported"] == 3 and len(result["sequences"]) == 1, result
    [dropped] = result["dropped"]
    assert dropped["item"].startswith("image 2 ") and "truncated" in dropped["reason"], dropped
    images = await sequence_images(store, result["sequences"][0]["id"])
    assert [im.captured_at_ms for im in images] == [1_619_863_200_500 + k * 1000
                                                    for k in range(3)]
    # mapillary_tools 0.14 puts cached handles into a later manifest without re-uploading.
    new = await upload(client, seeded.user_token, "mly_tools_3.jpg", photo(3))
    later = json.dumps({"image_handles": [*handles[1:], new], "upload_type": "images",
                        "version": "1"}).encode()
    m2 = await upload(client, seeded.user_token, "uuid_2.json", later)
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, m2, "mly_bundle_manifest"))
    assert result["imported"] == 1 and result["dropped_count"] == 2


async def test_zip_members_are_unpacked_safely(client, store, settings, seeded: Seeded,
                                               tmp_path: Path):
    bomb = b"\0" * (8 * 1024 * 1024)
    data = zip_of([
        ("../../escape.jpg", photo(0)),
        ("/abs/also.jpg", photo(1)),
        ("notes.txt", b"hello"),
        ("bomb.jpg", bomb),
        ("broken.jpg", b"\xff\xd8\xff\xe0 truncated"),
        ("dir/pano.jpg", photo(2, width=640, height=320)),
    ], compression=zipfile.ZIP_DEFLATED)
    handle = await upload(client, seeded.user_token, "mly_tools_mixed.zip", data)
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, handle, "zip"))
    assert result["state"] == "done" and result["imported"] == 3, result
    reasons = {d["item"]: d["reason"] for d in result["dropped"]}
    assert reasons["notes.txt"] == "not a JPEG image"
    assert reasons["bomb.jpg"] == "compression ratio too high"
    assert reasons["broken.jpg"].startswith("corrupt JPEG")
    assert not any(p.name == "escape.jpg" for p in tmp_path.rglob("escape.jpg"))
    assert not any(settings.data_dir.parent.rglob("escape.jpg"))
    images = await sequence_images(store, result["sequences"][0]["id"])
    pano = [im for im in images if im.width == 640]
    assert len(pano) == 1 and pano[0].is_pano and pano[0].camera_type == "spherical"
    assert all(not im.is_pano for im in images if im.width != 640)
    # Nothing of the job's staging stays behind.
    assert list((settings.data_dir / "uploads" / "work").iterdir()) == []


async def test_bad_uploads_fail_with_a_reason(client, store, settings, seeded: Seeded):
    handle = await upload(client, seeded.user_token, "mly_tools_nozip.zip", b"not a zip at all")
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, handle, "zip"))
    assert result == {"state": "failed", "error": "not a zip file"}
    many = zip_of([(f"{k}.jpg", b"x") for k in range(120)])
    small = settings.model_copy(update={"upload": settings.upload.model_copy(
        update={"max_images": 5})})
    handle = await upload(client, seeded.user_token, "mly_tools_many.zip", many)
    result = await run_job(small, store,
                           await finish(client, seeded.user_token, handle, "zip"))
    assert result["state"] == "failed" and "120 entries" in result["error"]
    handle = await upload(client, seeded.user_token, "mly_tools_v.mp4", b"\0" * 64)
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, handle, "mly_camm_video"))
    assert result["state"] == "failed" and "MP4" in result["error"]


async def test_camm_video_upload_becomes_frames_along_the_track(client, store, settings,
                                                                seeded: Seeded, tmp_path: Path):
    path = tmp_path / "drive.mp4"
    encode_video(path, seconds=10)
    step = 0.00004  # about 2.5 m of longitude per second at LAT0
    add_camm_track(path, [(float(t), LAT0, LON0 + t * step, 20.0) for t in range(10)],
                   make="CammMake", model="CammModel")
    handle = await upload(client, seeded.user_token, "mly_tools_drive.mp4", path.read_bytes())
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, handle, "mly_camm_video"))
    assert result["state"] == "done" and len(result["sequences"]) == 1, result
    images = await sequence_images(store, result["sequences"][0]["id"])
    assert len(images) == result["imported"] >= 6
    for image in images:
        assert image.lat == pytest.approx(LAT0, abs=1e-7)
        assert LON0 <= image.lon <= LON0 + 9 * step
        assert image.compass_angle_deg == pytest.approx(90.0, abs=1.0)
        assert (image.make, image.model) == ("CammMake", "CammModel")
        assert (image.width, image.height) == (64, 48)
    times = [im.captured_at_ms for im in images]
    assert times == sorted(times) and times[0] == 1_619_863_200_000
