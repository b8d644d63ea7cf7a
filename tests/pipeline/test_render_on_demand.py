"""On-demand pyramid levels (`GET /media/images/{id}/tile_…`, no token): bounded, coalesced,
and a level that cannot be rendered is remembered instead of being decoded again per request
(issue #14, item 3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.helpers_jpeg import make_bomb

import wayview.pipeline.process as process
from wayview.blobs import LocalBlobs
from wayview.blobs.base import image_blob_key, pyramid_failure_key
from wayview.errors import InvalidInput
from wayview.fixtures import make_jpeg
from wayview.ingest.importer import import_paths
from wayview.model.entities import ImageSearch
from wayview.testing import app_client, make_settings, open_test_store


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The levels `ensure_pyramid_level` decoded (each call of `render_pyramid`), slowed down
    a little so that parallel requests overlap."""
    calls: list[int] = []
    real = process.render_pyramid

    def counted(jpeg: bytes, levels: list[int]) -> Iterator[tuple[int, int, int, bytes]]:
        calls.extend(levels)
        time.sleep(0.2)
        yield from real(jpeg, levels)

    monkeypatch.setattr(process, "render_pyramid", counted)
    return calls


async def _imported(settings, store, tmp_path: Path) -> int:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(make_jpeg(
        width=1600, height=1000, lat=55.7, lon=13.2, captured_at=datetime(2024, 5, 1, tzinfo=UTC),
        compass_deg=90.0, seed=1))
    await store.create_user("alice")
    report = await import_paths(store, LocalBlobs(settings.blobs_path), settings, [folder],
                                username="alice")
    assert report.imported == 1
    page = await store.search_images(ImageSearch(bbox=(-180, -90, 180, 90), limit=1))
    return page.items[0].id


async def test_parallel_requests_for_a_missing_level_share_one_render(
        tmp_path: Path, renders: list[int]) -> None:
    settings = make_settings(tmp_path)
    async with open_test_store(settings) as store:
        image_id = await _imported(settings, store, tmp_path)
        renders.clear()
        async with app_client(settings, store) as client:
            answers = await asyncio.gather(*(
                client.get(f"/media/images/{image_id}/tile_9_0_0.jpg") for _ in range(8)))
            assert [r.status_code for r in answers] == [200] * 8
            assert renders == [9]
            assert (await client.get(f"/media/images/{image_id}/tile_9_0_0.jpg")
                    ).status_code == 200
            assert renders == [9]


async def test_a_level_that_cannot_render_is_remembered(
        tmp_path: Path, renders: list[int]) -> None:
    """The stored original was swapped for a bomb (or damaged): the level answers 404, fast,
    and is never decoded again; other levels still work off their stored tiles."""
    settings = make_settings(tmp_path)
    async with open_test_store(settings) as store:
        image_id = await _imported(settings, store, tmp_path)
        blobs = LocalBlobs(settings.blobs_path)
        blobs.put_bytes(image_blob_key(image_id, "original"), make_bomb(1600, 1000))
        renders.clear()
        async with app_client(settings, store, blobs) as client:
            for _ in range(5):
                started = time.perf_counter()
                r = await client.get(f"/media/images/{image_id}/tile_5_0_0.jpg")
                assert r.status_code == 404
                assert r.headers["content-type"].startswith("application/json")
            assert time.perf_counter() - started < 0.2
            assert blobs.exists(pyramid_failure_key(image_id, 5))
            # Refused from its header: the bomb was never handed to the decoder.
            assert renders == []
            assert (await client.get(f"/media/images/{image_id}/tile_11_0_0.jpg")
                    ).status_code == 200
            # The marker is private: never served.
            r = await client.get(f"/media/images/{image_id}/tile_5.failed")
            assert r.status_code != 200


async def test_a_level_whose_render_fails_is_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder gives up half-way (damaged scan data): 404, once decoded, never again."""
    attempts: list[int] = []

    def failing(jpeg: bytes, levels: list[int]) -> Iterator[tuple[int, int, int, bytes]]:
        attempts.extend(levels)
        yield 8, 0, 0, b"\xff\xd8"
        raise InvalidInput("corrupt image data: broken data stream")

    settings = make_settings(tmp_path)
    async with open_test_store(settings) as store:
        image_id = await _imported(settings, store, tmp_path)
        monkeypatch.setattr(process, "render_pyramid", failing)
        async with app_client(settings, store) as client:
            statuses = [(await client.get(f"/media/images/{image_id}/tile_8_0_0.jpg")
                         ).status_code for _ in range(3)]
        assert statuses == [404] * 3
        assert attempts == [8]
        blobs = LocalBlobs(settings.blobs_path)
        assert not blobs.exists(image_blob_key(image_id, "tile_8_0_0"))


async def test_an_oversized_stored_image_is_never_rendered(
        tmp_path: Path, renders: list[int]) -> None:
    """An image stored before the pixel limit existed (here: a limit lowered afterwards)."""
    settings = make_settings(tmp_path)
    async with open_test_store(settings) as store:
        image_id = await _imported(settings, store, tmp_path)
        renders.clear()
        small = make_settings(tmp_path, pipeline={"blurrer": "none",
                                                  "max_image_pixels": 1_000_000})
        async with app_client(small, store) as client:
            r = await client.get(f"/media/images/{image_id}/tile_7_0_0.jpg")
        assert r.status_code == 404 and renders == []
