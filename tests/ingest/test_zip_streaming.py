"""A zip upload's job needs no second copy of the upload on disk (issue #22, item 5: "staging
needs one copy, not two"): the importer reads the accepted members from the zip itself, one
at a time, and a job that fails half-way and is retried stores every image exactly once."""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.api.test_upload_ingest import finish, photo, run_job, upload, zip_of

from wayview.blobs import LocalBlobs
from wayview.ingest import upload_job
from wayview.ingest.upload_job import ZipMembers
from wayview.pipeline.worker import is_transient
from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import Seeded, app_client

MEMBERS = 10


def _photos() -> list[bytes]:
    return [photo(k, width=1600, height=1200) for k in range(MEMBERS)]


def _no_floor(settings: Settings) -> Settings:
    """`settings` without the uploads' free-disk floor (the small filesystems of these tests
    are below any sensible one)."""
    return settings.model_copy(update={"upload": settings.upload.model_copy(
        update={"min_free_disk_bytes": 0})})


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


async def test_the_job_stages_no_member_on_disk(client, store: Store, settings: Settings,
                                                seeded: Seeded,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Every time the importer reads a member, the staging folders hold at most one member's
    bytes (in fact none: the members are read from the zip)."""
    photos = _photos()
    work = settings.data_dir / "uploads" / "work"
    peaks: list[int] = []
    read = ZipMembers.read

    def watched(self: ZipMembers, path: Path) -> bytes:
        peaks.append(_bytes_under(work))
        return read(self, path)

    monkeypatch.setattr(ZipMembers, "read", watched)
    handle = await upload(client, seeded.user_token, "mly_tools_stream.zip",
                          zip_of([(f"{k}.jpg", p) for k, p in enumerate(photos)]))
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, handle, "zip"))
    assert result["imported"] == MEMBERS and result["dropped"] == [], result
    assert len(peaks) == 2 * MEMBERS  # scanned, then processed
    print(f"work folder peak: {max(peaks)} bytes; largest member {max(map(len, photos))}")  # noqa: T201
    assert max(peaks) <= max(len(p) for p in photos)
    assert list(work.iterdir()) == []


@contextlib.contextmanager
def _tmpfs(folder: Path, size: int) -> Iterator[None]:
    """A tmpfs of `size` bytes mounted on `folder` (skip when mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) to make a small filesystem")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(folder)], capture_output=True, text=True, check=False,
                          timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, timeout=30,
                       capture_output=True)


async def test_a_zip_is_processed_with_less_free_space_than_its_size(
        store: Store, settings: Settings, seeded: Seeded) -> None:
    """`data_dir/uploads` on a filesystem 1.5 times the zip's size: once the zip is uploaded,
    less than the zip's size is free, so a second full copy could not be staged; the job
    imports every member all the same."""
    settings = _no_floor(settings)
    photos = _photos()
    data = zip_of([(f"{k}.jpg", p) for k, p in enumerate(photos)])
    uploads = settings.data_dir / "uploads"
    with _tmpfs(uploads, len(data) * 3 // 2):
        async with app_client(settings, store) as client:
            handle = await upload(client, seeded.user_token, "mly_tools_small_fs.zip", data)
            cluster = await finish(client, seeded.user_token, handle, "zip")
        free = shutil.disk_usage(uploads).free
        assert free < len(data), (free, len(data))
        result = await run_job(settings, store, cluster)
    print(f"zip {len(data)} bytes, {free} free after the upload")  # noqa: T201
    assert result["state"] == "done" and result["imported"] == MEMBERS, result
    assert result["staged_bytes"] == sum(map(len, photos))


async def test_a_job_that_fails_half_way_stores_every_image_once_when_retried(
        client, store: Store, settings: Settings, seeded: Seeded,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies (here: an unexpected error) while members are being processed; the
    retry imports the rest and leaves no blob of the failed attempt behind."""
    photos = _photos()[:6]
    handle = await upload(client, seeded.user_token, "mly_tools_retry.zip",
                          zip_of([(f"{k}.jpg", p) for k, p in enumerate(photos)]))
    cluster = await finish(client, seeded.user_token, handle, "zip")
    read = ZipMembers.read
    calls: list[Path] = []

    def failing(self: ZipMembers, path: Path) -> bytes:
        calls.append(path)
        if len(calls) == len(photos) + 3:  # the third member's second read (processing)
            raise RuntimeError("the worker died")
        return read(self, path)

    monkeypatch.setattr(ZipMembers, "read", failing)
    with pytest.raises(RuntimeError, match="the worker died"):
        await run_job(settings, store, cluster)
    before = await store.count_images()
    monkeypatch.setattr(ZipMembers, "read", read)
    result = await run_job(settings, store, cluster)
    assert result["imported"] == len(photos) and result["dropped"] == [], result
    assert await store.count_images() == before + len(photos) == len(seeded.images) + 6
    stored = {int(n) for seq in result["sequences"] for n in await _image_ids(store, seq)}
    assert len(stored) == len(photos)
    # No blob of an image that is not stored (the failed attempt's are discarded).
    blob_ids = {int(info.key.split("/")[2])
                for top in ("images/", "private/")
                for info in LocalBlobs(settings.blobs_path).list_keys(top)}
    assert blob_ids - {im.id for im in seeded.images} == stored


async def _image_ids(store: Store, sequence: dict[str, Any]) -> list[int]:
    from wayview.model.entities import ImageSearch

    page = await store.search_images(ImageSearch(sequence_ids=(sequence["id"],)))
    return [im.id for im in page.items]


def test_a_member_that_no_longer_reads_as_checked_is_refused(tmp_path: Path) -> None:
    zipped = tmp_path / "u.zip"
    zipped.write_bytes(zip_of([("0.jpg", photo(0)), ("1.jpg", photo(1))]))
    staged = upload_job.stage_zip(zipped, max_images=10, max_image_bytes=10**7)
    assert list(staged.names.values()) == ["0.jpg", "1.jpg"]
    info, size = staged.members["000001.jpg"]
    members = {"000000.jpg": staged.members["000000.jpg"], "000001.jpg": (info, size - 1)}
    with ZipMembers(zipped, members) as reader:
        assert reader.read(tmp_path / "000000.jpg") == photo(0)
        with pytest.raises(OSError, match="corrupt member"):
            reader.read(tmp_path / "000001.jpg")
        with pytest.raises(FileNotFoundError):
            reader.read(tmp_path / "000002.jpg")


async def test_a_full_disk_while_storing_fails_the_job_to_be_retried_not_the_images(
        client, store: Store, settings: Settings, seeded: Seeded,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the blob store is not the image's fault: the attempt fails (the worker
    retries it, `is_transient`) instead of finishing with the images dropped as "cannot
    store"; the retry stores every image once."""
    photos = _photos()[:4]
    handle = await upload(client, seeded.user_token, "mly_tools_enospc.zip",
                          zip_of([(f"{k}.jpg", p) for k, p in enumerate(photos)]))
    cluster = await finish(client, seeded.user_token, handle, "zip")
    put = LocalBlobs.put_bytes

    def full(self: LocalBlobs, key: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalBlobs, "put_bytes", full)
    with pytest.raises(OSError) as info:
        await run_job(settings, store, cluster)
    assert is_transient(info.value)
    assert (await store.get_upload_finish(cluster)).result is None  # type: ignore[union-attr]
    monkeypatch.setattr(LocalBlobs, "put_bytes", put)
    result = await run_job(settings, store, cluster)
    assert result["imported"] == len(photos) and result["dropped"] == [], result
