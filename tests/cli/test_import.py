"""Tests of `wayview import` (wayview.ingest.cli/importer) against the real SQLite store."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result
from tests.helpers_jpeg import write_jpeg

from wayview.blobs import IMAGE_VARIANTS, LocalBlobs, image_blob_key
from wayview.cli import cli
from wayview.errors import Conflict, InvalidInput
from wayview.ingest.importer import DEFAULT_CAMERA_PARAMETERS, import_paths
from wayview.model.entities import Image, ImageSearch
from wayview.model.entities import Sequence as SequenceEntity
from wayview.settings import Settings
from wayview.store import Store, open_store

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
T = TypeVar("T")


def _settings(data_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir)


def with_store(data_dir: Path, fn: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = open_store(_settings(data_dir))
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


def create_user(data_dir: Path, name: str = "alice") -> int:
    async def run(store: Store) -> int:
        return (await store.create_user(name)).id

    return with_store(data_dir, run)


def sequence_images(data_dir: Path, sequence_id: str) -> list[Image]:
    async def run(store: Store) -> list[Image]:
        return (await store.search_images(ImageSearch(sequence_ids=(sequence_id,)))).items

    return with_store(data_dir, run)


def image_count(data_dir: Path) -> int:
    return with_store(data_dir, lambda store: store.count_images())


def write_run(
    folder: Path, prefix: str, count: int, *, start: datetime, lat: float, **kwargs: Any
) -> list[Path]:
    """`count` photos 2 s and ~11 m apart, heading north."""
    return [
        write_jpeg(
            folder / f"{prefix}{i:02d}.jpg",
            width=320,
            height=240,
            lat=lat + i * 0.0001,
            lon=13.4,
            captured_at=start + timedelta(seconds=2 * i),
            heading_deg=float(i),
            **kwargs,
        )
        for i in range(count)
    ]


def run_import(data_dir: Path, *args: str, as_json: bool = True) -> Result:
    argv = ["import", *args, "--data-dir", str(data_dir)] + (["--json"] if as_json else [])
    return CliRunner().invoke(cli, argv)


def import_json(data_dir: Path, *args: str) -> dict[str, Any]:
    result = run_import(data_dir, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    create_user(path, "alice")
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_run(folder, "a", 6, start=T0, lat=52.52)
    write_run(folder / "later", "b", 3, start=T0 + timedelta(hours=1), lat=52.52)
    return folder


def test_import_folder_becomes_sequences(data_dir: Path, photos: Path) -> None:
    out = import_json(data_dir, str(photos), "--user", "alice")
    assert out["imported"] == 9 and out["skipped"] == []
    assert [s["image_count"] for s in out["sequences"]] == [6, 3]
    first = sequence_images(data_dir, out["sequences"][0]["id"])
    assert [im.captured_at_ms for im in first] == [
        int((T0 + timedelta(seconds=2 * i)).timestamp() * 1000) for i in range(6)
    ]
    assert [im.compass_angle_deg for im in first] == [float(i) for i in range(6)]
    image = first[0]
    assert image.creator_username == "alice"
    assert (image.width, image.height) == (320, 240)
    assert image.lat == pytest.approx(52.52, abs=1e-7) and image.lon == pytest.approx(13.4)
    assert (image.make, image.model) == ("TestMake", "TestModel")
    assert image.camera_type == "perspective"
    assert image.camera_parameters == DEFAULT_CAMERA_PARAMETERS
    assert image.organization_id is None
    blobs = LocalBlobs(_settings(data_dir).blobs_path)
    original = (photos / "a00.jpg").read_bytes()
    assert blobs.get_bytes(image_blob_key(image.id, "original")) == original
    assert all(blobs.exists(image_blob_key(im.id, v)) for im in first for v in IMAGE_VARIANTS)


def test_import_again_does_not_duplicate(data_dir: Path, photos: Path) -> None:
    import_json(data_dir, str(photos), "--user", "alice")
    again = import_json(data_dir, str(photos), "--user", "alice")
    assert again["imported"] == 0 and again["sequences"] == []
    assert len(again["skipped"]) == 9
    assert {s["reason"] for s in again["skipped"]} == {"already imported"}
    assert image_count(data_dir) == 9


def test_import_skips_bad_files_with_reasons_and_imports_the_rest(
    data_dir: Path, photos: Path
) -> None:
    good = (photos / "a00.jpg").read_bytes()
    (photos / "corrupt.jpg").write_bytes(good[:300])
    (photos / "notes.txt").write_text("not a photo")
    write_jpeg(photos / "nogps.jpg", lat=None, lon=None)
    out = import_json(data_dir, str(photos), "--user", "alice")
    assert out["imported"] == 9
    reasons = {Path(s["path"]).name: s["reason"] for s in out["skipped"]}
    assert reasons["notes.txt"] == "not a JPEG"
    assert reasons["nogps.jpg"] == "no GPS position"
    assert reasons["corrupt.jpg"].startswith("corrupt")
    assert set(reasons) == {"notes.txt", "nogps.jpg", "corrupt.jpg"}


def test_import_undecodable_pixels_are_skipped_after_the_scan(
    data_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    paths = write_run(folder, "a", 3, start=T0, lat=52.52)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 200])  # header intact, scan data cut short
    out = import_json(data_dir, str(folder), "--user", "alice")
    assert out["imported"] == 2
    assert [Path(s["path"]).name for s in out["skipped"]] == ["a01.jpg"]
    assert out["skipped"][0]["reason"].startswith("corrupt image data")


def test_import_same_content_twice_in_one_run_is_imported_once(
    data_dir: Path, photos: Path
) -> None:
    (photos / "copy.jpg").write_bytes((photos / "a03.jpg").read_bytes())
    out = import_json(data_dir, str(photos), "--user", "alice")
    assert out["imported"] == 9
    assert out["skipped"] == [
        {"path": str(photos / "copy.jpg"), "reason": f"duplicate of {photos / 'a03.jpg'}"}
    ]


def test_import_named_files_and_missing_paths(data_dir: Path, photos: Path) -> None:
    out = import_json(
        data_dir, str(photos / "a00.jpg"), str(photos / "a01.jpg"), str(photos / "nope.jpg"),
        "--user", "alice",
    )  # fmt: skip
    assert out["imported"] == 2
    assert out["skipped"] == [
        {"path": str(photos / "nope.jpg"), "reason": "no such file or folder"}
    ]


def test_import_does_not_follow_symlinks_out_of_the_tree(data_dir: Path, tmp_path: Path) -> None:
    outside = write_jpeg(tmp_path / "outside" / "x.jpg")
    folder = tmp_path / "photos"
    write_run(folder, "a", 2, start=T0, lat=52.52)
    os.symlink(outside, folder / "link.jpg")
    os.symlink(outside.parent, folder / "linkdir")
    out = import_json(data_dir, str(folder), "--user", "alice")
    assert out["imported"] == 2
    assert sorted(Path(s["path"]).name for s in out["skipped"]) == ["link.jpg", "linkdir"]
    assert {s["reason"] for s in out["skipped"]} == {"symbolic link (not followed)"}


def test_import_gap_options_override_the_settings(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_run(folder, "a", 4, start=T0, lat=52.52)  # 2 s and ~11 m apart
    by_time = import_json(data_dir, str(folder), "--user", "alice", "--max-time-gap-s", "1")
    assert [s["image_count"] for s in by_time["sequences"]] == [1, 1, 1, 1]

    other = tmp_path / "other"
    write_run(other, "b", 4, start=T0, lat=40.0)
    by_distance = import_json(data_dir, str(other), "--user", "alice", "--max-distance-gap-m", "5")
    assert [s["image_count"] for s in by_distance["sequences"]] == [1, 1, 1, 1]


def test_import_camera_change_starts_a_new_sequence(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_run(folder, "a", 3, start=T0, lat=52.52)
    write_run(folder, "b", 2, start=T0 + timedelta(seconds=6), lat=52.5203, model="Other")
    out = import_json(data_dir, str(folder), "--user", "alice")
    assert [s["image_count"] for s in out["sequences"]] == [3, 2]


def test_import_panorama_is_spherical(data_dir: Path, tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "pano" / "p.jpg", width=512, height=256, gpano=True)
    out = import_json(data_dir, str(path), "--user", "alice")
    (image,) = sequence_images(data_dir, out["sequences"][0]["id"])
    assert (image.camera_type, image.is_pano, image.camera_parameters) == ("spherical", True, None)


def test_import_unknown_user_is_a_clean_error(data_dir: Path, photos: Path) -> None:
    result = run_import(data_dir, str(photos), "--user", "nobody", as_json=False)
    assert result.exit_code != 0
    assert "unknown user 'nobody'" in result.stderr
    assert "Traceback" not in result.output
    assert image_count(data_dir) == 0


def test_import_organization_needs_membership(data_dir: Path, photos: Path) -> None:
    async def setup(store: Store) -> int:
        org = await store.create_organization("acme")
        return org.id

    org_id = with_store(data_dir, setup)
    refused = run_import(data_dir, str(photos), "--user", "alice", "--organization", str(org_id))
    assert refused.exit_code != 0 and "not a member" in refused.stderr
    unknown = run_import(data_dir, str(photos), "--user", "alice", "--organization", "12345")
    assert unknown.exit_code != 0 and "unknown organization 12345" in unknown.stderr

    async def join(store: Store) -> None:
        user = await store.get_user_by_username("alice")
        assert user is not None
        await store.add_organization_member(org_id, user.id)

    with_store(data_dir, join)
    out = import_json(data_dir, str(photos), "--user", "alice", "--organization", str(org_id))
    images = sequence_images(data_dir, out["sequences"][0]["id"])
    assert {im.organization_id for im in images} == {org_id}


def test_import_text_summary_lists_skipped_files(data_dir: Path, photos: Path) -> None:
    (photos / "notes.txt").write_text("x")
    result = run_import(data_dir, str(photos), "--user", "alice", as_json=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Imported 9 images in 2 sequences.")
    assert f"{photos / 'notes.txt'}: not a JPEG" in result.stdout
    assert "Importing" in result.stderr and "Importing" not in result.stdout


def test_import_json_prints_exactly_one_object(data_dir: Path, photos: Path) -> None:
    result = run_import(data_dir, str(photos), "--user", "alice")
    assert result.exit_code == 0
    assert set(json.loads(result.stdout)) == {"imported", "sequences", "skipped"}
    assert result.stderr == ""


def test_import_empty_folder_succeeds(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert import_json(data_dir, str(tmp_path / "empty"), "--user", "alice") == {
        "imported": 0,
        "sequences": [],
        "skipped": [],
    }


# -- the importer API ---------------------------------------------------------------------------


class RecordingStore:
    """The real store, checking that blobs exist before rows and optionally failing inserts."""

    def __init__(self, store: Store, blobs: LocalBlobs, fail_with: Exception | None) -> None:
        self._store = store
        self._blobs = blobs
        self._fail_with = fail_with
        self.inserted: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def insert_sequence(self, sequence: SequenceEntity, images: Sequence[Image]) -> None:
        for image in images:
            for variant in IMAGE_VARIANTS:
                assert self._blobs.exists(image_blob_key(image.id, variant))
        self.inserted.append([image.id for image in images])
        if self._fail_with is not None:
            raise self._fail_with
        await self._store.insert_sequence(sequence, images)


async def _import_with(
    tmp_path: Path, photos: Path, fail_with: Exception | None, journal_owner: str | None = None
) -> tuple[Any, RecordingStore, LocalBlobs, list[int]]:
    settings = _settings(tmp_path / "api-data")
    store = open_store(settings)
    await store.open()
    try:
        await store.create_user("alice")
        blobs = LocalBlobs(settings.blobs_path)
        recording = RecordingStore(store, blobs, fail_with)
        ticks: list[int] = []
        report = await import_paths(
            recording,  # type: ignore[arg-type]
            blobs,
            settings,
            [photos],
            username="alice",
            progress=ticks.append,
            journal_owner=journal_owner,
        )
        return report, recording, blobs, ticks
    finally:
        await store.close()


async def test_import_paths_writes_blobs_before_rows_and_reports_progress(
    tmp_path: Path, photos: Path
) -> None:
    (photos / "notes.txt").write_text("x")
    report, recording, _, ticks = await _import_with(tmp_path, photos, None)
    assert report.imported == 9 and [len(ids) for ids in recording.inserted] == [6, 3]
    assert sum(ticks) == 10  # every file found, imported or skipped


async def test_import_paths_failed_insert_removes_the_blobs(tmp_path: Path, photos: Path) -> None:
    report, recording, blobs, _ = await _import_with(tmp_path, photos, Conflict("boom"))
    assert report.imported == 0 and report.sequences == ()
    assert len(report.skipped) == 9
    assert {s.reason for s in report.skipped} == {"not stored: boom"}
    ids = [image_id for batch in recording.inserted for image_id in batch]
    assert not any(blobs.exists(image_blob_key(i, v)) for i in ids for v in IMAGE_VARIANTS)


async def _journal_after(tmp_path: Path) -> dict[str, list[str]]:
    """Every blob-journal owner left after an import (retired ones included) and its keys."""
    store = open_store(_settings(tmp_path / "api-data"))
    await store.open()
    try:
        import time

        owners = await store.retired_blob_owners(int(time.time() * 1000) + 60_000)
        return {owner: await store.journaled_blobs(owner) for owner in owners}
    finally:
        await store.close()


async def test_import_paths_failed_insert_retires_the_journal_for_a_second_delete(
    tmp_path: Path, photos: Path
) -> None:
    """A write the blob store did not answer may land after the delete: every folder of the
    failed sequences stays journaled (retired) until `sweep_retired_blobs` deletes it again."""
    _, recording, _, _ = await _import_with(tmp_path, photos, Conflict("boom"))
    ids = [image_id for batch in recording.inserted for image_id in batch]
    retired = await _journal_after(tmp_path)
    assert [owner.split(":")[:2] for owner in retired] == [["late", "import"]]
    [keys] = retired.values()
    assert {k for k in keys if k.startswith("images/")} == {
        image_blob_key(i, "thumb_256").rsplit("/", 1)[0] + "/" for i in ids}


async def test_import_paths_store_outage_at_insert_keeps_blobs_and_journal(
    tmp_path: Path, photos: Path
) -> None:
    """The insert may have committed although the connection failed: nothing is deleted, the
    journal stays for the next attempt to decide from what is stored."""
    from wayview.errors import StoreUnavailable
    from wayview.pipeline.process import discard_journaled_blobs

    with pytest.raises(StoreUnavailable):
        await _import_with(tmp_path, photos, StoreUnavailable("database unavailable"),
                           journal_owner="upload:5")
    settings = _settings(tmp_path / "api-data")
    blobs = LocalBlobs(settings.blobs_path)
    image_files = lambda: [p for p in settings.blobs_path.glob("images/*/*/*")]  # noqa: E731
    assert image_files(), "blobs were deleted although the insert may have committed"
    assert await _journal_after(tmp_path) == {}  # nothing retired either
    store = open_store(settings)
    await store.open()
    try:
        assert await store.journaled_blobs("upload:5")
        assert await discard_journaled_blobs(store, blobs, "upload:5") > 0  # the next attempt
        assert await store.journaled_blobs("upload:5") == []
    finally:
        await store.close()
    assert not image_files()


async def test_import_paths_unexpected_insert_error_propagates_after_cleanup(
    tmp_path: Path, photos: Path
) -> None:
    with pytest.raises(RuntimeError, match="disk on fire"):
        await _import_with(tmp_path, photos, RuntimeError("disk on fire"))
    assert not any(p.is_file() for p in (tmp_path / "api-data" / "blobs").rglob("*"))


async def test_import_paths_unknown_user_raises_invalid_input(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data")
    store = open_store(settings)
    await store.open()
    try:
        with pytest.raises(InvalidInput, match="unknown user"):
            await import_paths(
                store, LocalBlobs(settings.blobs_path), settings, [tmp_path], username="x"
            )
    finally:
        await store.close()


def test_import_of_nothing_that_exists_is_an_error(data_dir: Path, tmp_path: Path) -> None:
    """A mistyped folder fails (exit 1, one line) instead of "Skipped 1 file" and success."""
    missing = tmp_path / "walk-2024-05"
    result = CliRunner().invoke(cli, ["import", str(missing), str(tmp_path / "b.jpg"), "--user",
                                      "alice", "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: no such file or folder: {missing}, {tmp_path / 'b.jpg'}")
