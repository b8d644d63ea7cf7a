"""The processing pipeline seen through the API: what an imported sequence looks like to
MapillaryJS (computed fields, pyramid, mesh, cluster) and privacy blurring of public blobs."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from tests.pipeline.test_blur import draw_face

from wayview.auth.tokens import create_app
from wayview.blobs import LocalBlobs
from wayview.blobs.base import private_source_key
from wayview.fixtures import make_jpeg
from wayview.ingest.importer import import_paths
from wayview.model.entities import ImageSearch
from wayview.pipeline.positions import heading_from_rotation
from wayview.pipeline.pyramid import grid
from wayview.pipeline.sfm_assets import decode_cluster, decode_mesh
from wayview.testing import app_client, make_settings, open_test_store

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
FIELDS = ("id,sequence,computed_geometry,computed_compass_angle,computed_rotation,atomic_scale,"
          "merge_cc,camera_parameters,mesh,sfm_cluster,width,height")


def _line(folder: Path, n: int, *, lat: float, lon0: float, dlon: float, t0: datetime,
          compass: float | None, size: tuple[int, int] = (1600, 1000)) -> None:
    for k in range(n):
        (folder / f"{k:03d}.jpg").write_bytes(make_jpeg(
            width=size[0], height=size[1], lat=lat, lon=lon0 + k * dlon,
            captured_at=t0 + timedelta(seconds=k), compass_deg=compass, focal_35mm=28, seed=k))


async def _import(settings, store, folder: Path) -> list[str]:
    report = await import_paths(store, LocalBlobs(settings.blobs_path), settings, [folder],
                                username="alice")
    assert report.skipped == ()
    return [s.id for s in report.sequences]


async def test_imported_sequence_has_computed_poses_pyramid_mesh_and_cluster(tmp_path: Path):
    settings = make_settings(tmp_path)
    east, cross = tmp_path / "east", tmp_path / "cross"
    east.mkdir()
    cross.mkdir()
    # Eastward at ~3.4 m per image with no compass: the heading comes from the track.
    _line(east, 6, lat=55.7, lon0=13.19, dlon=0.00005, t0=T0, compass=None)
    # A later sequence crossing the first one shares its merge component.
    _line(cross, 3, lat=55.7, lon0=13.19015, dlon=0.0, t0=T0 + timedelta(hours=1), compass=0.0)
    async with open_test_store(settings) as store:
        alice = await store.create_user("alice")
        app = await create_app(store, "viewer", owner=alice)
        [seq] = await _import(settings, store, east)
        [seq2] = await _import(settings, store, cross)
        async with app_client(settings, store) as client:
            auth = {"Authorization": f"OAuth {app.client_token}"}
            r = await client.get("/images", params={"sequence_ids": seq, "fields": FIELDS},
                                 headers=auth)
            images = sorted(r.json()["data"], key=lambda im: im["id"])
            assert len(images) == 6
            for im in images:
                assert im["computed_compass_angle"] == pytest_approx(90.0, 5.0)
                assert heading_from_rotation(im["computed_rotation"]) == pytest_approx(90.0, 5.0)
                assert im["atomic_scale"] == 1.0
                assert im["camera_parameters"][0] == pytest_approx(28 / 36, 1e-6)
                assert isinstance(im["merge_cc"], int) and 0 < im["merge_cc"] < 2**53
                assert im["mesh"]["id"] == im["id"] and im["sfm_cluster"]["id"] == seq
            assert len({im["merge_cc"] for im in images}) == 1
            r2 = await client.get("/images", params={"sequence_ids": seq2,
                                                     "fields": "merge_cc"}, headers=auth)
            assert {im["merge_cc"] for im in r2.json()["data"]} == {images[0]["merge_cc"]}

            # Assets are public (no token) and decode as MapillaryJS decodes them.
            first = images[0]
            mesh = await client.get(first["mesh"]["url"])
            assert mesh.status_code == 200
            vertices, faces = decode_mesh(mesh.content)
            assert len(vertices) >= 4 and faces
            cluster = await client.get(first["sfm_cluster"]["url"])
            assert cluster.status_code == 200 and cluster.content[0] == 0x78
            [reconstruction] = decode_cluster(cluster.content)
            assert set(reconstruction["shots"]) == {im["id"] for im in images}
            assert reconstruction["reference_lla"]["latitude"] == pytest_approx(55.7, 1e-3)

            # The pyramid: a complete grid per level; stored and on-demand levels both serve.
            for z in (11, 9):
                r = await client.get(f"/{first['id']}/tiles", params={"z": str(z)},
                                     headers=auth)
                assert r.status_code == 200, r.text
                tiles = r.json()["data"]
                columns, rows = grid(1600, 1000, z)
                assert sorted((t["x"], t["y"]) for t in tiles) == [
                    (x, y) for x in range(columns) for y in range(rows)]
                assert all(set(t) == {"url", "z", "x", "y"} and t["z"] == z for t in tiles)
                last = max(tiles, key=lambda t: (t["x"], t["y"]))
                body = await client.get(last["url"])
                assert body.status_code == 200
                assert body.headers["content-type"] == "image/jpeg"
                Image.open(io.BytesIO(body.content)).verify()
            assert (await client.get(tiles[0]["url"].replace("tile_9_", "tile_12_"))
                    ).status_code == 404


async def test_a_bridging_sequence_joins_two_stored_components(tmp_path: Path):
    settings = make_settings(tmp_path)
    folders = {name: tmp_path / name for name in ("west", "east", "bridge")}
    for folder in folders.values():
        folder.mkdir()
    # Two short lines ~110 m apart (separate components), then one that runs from one to the
    # other (about every 11 m).
    _line(folders["west"], 2, lat=55.7, lon0=13.1900, dlon=0.00005, t0=T0, compass=90.0,
          size=(320, 240))
    _line(folders["east"], 2, lat=55.7, lon0=13.1918, dlon=0.00005, t0=T0 + timedelta(hours=1),
          compass=90.0, size=(320, 240))
    _line(folders["bridge"], 11, lat=55.7, lon0=13.1901, dlon=0.00017,
          t0=T0 + timedelta(hours=2), compass=90.0, size=(320, 240))
    async with open_test_store(settings) as store:
        await store.create_user("alice")

        async def components() -> dict[str, set[int | None]]:
            out: dict[str, set[int | None]] = {}
            for name, seq in sequences.items():
                page = await store.search_images(ImageSearch(sequence_ids=(seq,)))
                out[name] = {im.merge_cc for im in page.items}
            return out

        sequences = {name: (await _import(settings, store, folders[name]))[0]
                     for name in ("west", "east")}
        before = await components()
        assert before["west"] != before["east"] and all(len(v) == 1 for v in before.values())
        sequences["bridge"] = (await _import(settings, store, folders["bridge"]))[0]
        after = await components()
        assert after["west"] == after["east"] == after["bridge"]
        assert after["bridge"] == min(before["west"], before["east"], key=lambda v: min(v))


async def test_image_tiles_errors_use_the_graph_envelope(tmp_path: Path):
    settings = make_settings(tmp_path)
    folder = tmp_path / "p"
    folder.mkdir()
    _line(folder, 1, lat=55.7, lon0=13.19, dlon=0.0, t0=T0, compass=10.0, size=(640, 480))
    async with open_test_store(settings) as store:
        alice = await store.create_user("alice")
        app = await create_app(store, "viewer", owner=alice)
        await _import(settings, store, folder)
        [image_id] = (await store.find_images_by_sha256(
            [hashlib.sha256((folder / "000.jpg").read_bytes()).hexdigest()])).values()
        async with app_client(settings, store) as client:
            auth = {"Authorization": f"OAuth {app.client_token}"}

            async def get(params: dict[str, str], node: int = image_id):
                r = await client.get(f"/{node}/tiles", params=params, headers=auth)
                return r.status_code, r.json().get("error", {}).get("message", "")

            assert (await get({"z": "11"}))[0] == 200
            assert (await get({"z": "12"}))[0] == 400  # max(ceil(log2 640), 11) = 11
            assert (await get({"z": "-1"}))[0] == 400
            assert (await get({}))[0] == 400
            status, message = await get({"z": "11", "fields": "url,id"})
            assert status == 400 and "ImageTile" in message
            assert (await get({"z": "11"}, node=image_id + 1))[0] in (400, 404)


async def test_faces_are_blurred_in_every_public_derivative(tmp_path: Path):
    settings = make_settings(tmp_path, pipeline={"blurrer": "opencv"})
    folder = tmp_path / "faces"
    folder.mkdir()
    exif_jpeg = make_jpeg(width=1024, height=768, lat=55.7, lon=13.19, captured_at=T0,
                          compass_deg=0.0, seed=3)
    with Image.open(io.BytesIO(exif_jpeg)) as source:
        exif = source.info["exif"]
        rgb = np.asarray(source.convert("RGB")).copy()
    draw_face(rgb, (512, 384), 160)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=92, exif=exif)
    (folder / "face.jpg").write_bytes(buffer.getvalue())
    async with open_test_store(settings) as store:
        alice = await store.create_user("alice")
        app = await create_app(store, "viewer", owner=alice)
        await _import(settings, store, folder)
        [image_id] = (await store.find_images_by_sha256(
            [hashlib.sha256(buffer.getvalue()).hexdigest()])).values()
        blobs = LocalBlobs(settings.blobs_path)
        assert blobs.get_bytes(private_source_key(image_id)) == buffer.getvalue()
        async with app_client(settings, store) as client:
            auth = {"Authorization": f"OAuth {app.client_token}"}
            r = await client.get(f"/{image_id}", headers=auth, params={
                "fields": "thumb_256_url,thumb_1024_url,thumb_original_url"})
            urls = list(r.json().values())[:3]
            images = []
            for url in urls:
                public = await client.get(url)
                assert public.status_code == 200
                images.append((url, Image.open(io.BytesIO(public.content)).convert("L")))
            # z = 11 of a 1024-px image: 512-px source tiles, unscaled; stitched back
            r = await client.get(f"/{image_id}/tiles", params={"z": "11"}, headers=auth)
            stitched = Image.new("L", (1024, 768))
            for t in r.json()["data"]:
                tile = await client.get(t["url"])
                stitched.paste(Image.open(io.BytesIO(tile.content)).convert("L"),
                               (t["x"] * 512, t["y"] * 512))
            images.append(("pyramid z11", stitched))
            for url, public_image in images:
                got = np.asarray(public_image.resize((1024, 768)), dtype=float)
                want = np.asarray(Image.fromarray(rgb).convert("L"), dtype=float)
                face = (slice(384 - 50, 384 + 50), slice(512 - 45, 512 + 45))
                background = (slice(0, 150), slice(0, 200))
                assert np.abs(got[face] - want[face]).mean() > 20, url
                assert np.abs(got[background] - want[background]).mean() < 3, url
            # The private source is never served
            assert (await client.get(f"/media/images/{image_id}/source.jpg")).status_code == 404


def pytest_approx(value: float, tol: float):
    import pytest

    return pytest.approx(value, abs=tol)
