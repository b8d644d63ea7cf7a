"""What one upload may stage (issue #14, item 4): every zip member counts against the ratio
check and the `upload.max_expanded_bytes` budget, a manifest's repeated handle is staged once,
and staging never changes the uploaded bytes."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile

from tests.api.test_upload_ingest import finish, photo, run_job, upload, zip_of

from wayview.ingest.upload_sessions import staged_path
from wayview.testing import Seeded, app_client, make_settings


async def test_small_zero_members_are_refused_by_the_ratio_check(client, store, settings,
                                                                  seeded: Seeded):
    """300 × 1 MiB of zeros is a 337 kB zip; members under 1 MiB used to skip the check."""
    members = [(f"{k}.jpg", b"\0" * (1024 * 1024)) for k in range(60)]
    members += [("real.jpg", photo(0)), ("small.jpg", b"\0" * 5000)]
    data = zip_of(members, compression=zipfile.ZIP_DEFLATED)
    assert len(data) < 100_000
    handle = await upload(client, seeded.user_token, "mly_tools_zeros.zip", data)
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, handle, "zip"))
    assert result["state"] == "done" and result["imported"] == 1, result
    reasons = {d["item"]: d["reason"] for d in result["dropped"]}
    assert all(reasons[f"{k}.jpg"] == "compression ratio too high" for k in range(60))
    assert reasons["small.jpg"] == "compression ratio too high"
    assert result["staged_bytes"] == len(photo(0))


async def test_real_jpeg_zips_pass_the_ratio_check_deflated(client, store, settings,
                                                            seeded: Seeded):
    data = zip_of([(f"{k}.jpg", photo(k)) for k in range(4)], compression=zipfile.ZIP_DEFLATED)
    handle = await upload(client, seeded.user_token, "mly_tools_real.zip", data)
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, handle, "zip"))
    assert result["imported"] == 4 and result["dropped"] == [], result


async def test_a_zip_stops_staging_at_the_expanded_bytes_budget(tmp_path, store,
                                                                 seeded: Seeded):
    photos = [photo(k) for k in range(5)]
    budget = len(photos[0]) + len(photos[1]) + len(photos[2]) // 2
    settings = make_settings(tmp_path, upload={"max_expanded_bytes": budget})
    async with app_client(settings, store) as client:
        data = zip_of([(f"{k}.jpg", p) for k, p in enumerate(photos)])
        handle = await upload(client, seeded.user_token, "mly_tools_budget.zip", data)
        result = await run_job(settings, store,
                               await finish(client, seeded.user_token, handle, "zip"))
    assert result["imported"] == 2, result
    assert result["staged_bytes"] <= budget
    reasons = {d["item"]: d["reason"] for d in result["dropped"]}
    assert set(reasons) == {"2.jpg", "3.jpg", "4.jpg"}
    assert all("max_expanded_bytes" in r and str(budget) in r for r in reasons.values())


async def test_a_zip_member_that_lies_about_its_size_is_counted_as_inflated(
        tmp_path, store, seeded: Seeded):
    """The central directory says 1000 bytes; the member inflates to 2 MiB of zeros."""
    settings = make_settings(tmp_path)
    data = bytearray(zip_of([("liar.jpg", b"\0" * (2 * 1024 * 1024)), ("ok.jpg", photo(1))],
                            compression=zipfile.ZIP_DEFLATED))
    with zipfile.ZipFile(__import__("io").BytesIO(bytes(data))) as zf:
        info = zf.getinfo("liar.jpg")
        compressed = info.compress_size
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        at = data.find(signature)
        data[at + offset : at + offset + 4] = (compressed * 50).to_bytes(4, "little")
    async with app_client(settings, store) as client:
        handle = await upload(client, seeded.user_token, "mly_tools_liar.zip", bytes(data))
        result = await run_job(settings, store,
                               await finish(client, seeded.user_token, handle, "zip"))
    reasons = {d["item"]: d["reason"] for d in result["dropped"]}
    assert reasons["liar.jpg"] in ("compression ratio too high",) or reasons[
        "liar.jpg"].startswith("corrupt member"), reasons
    assert result["imported"] == 1 and result["staged_bytes"] == len(photo(1))


def _manifest(handles: list[str]) -> bytes:
    return json.dumps({"image_handles": handles, "upload_type": "images",
                       "version": "1"}).encode()


async def test_a_manifest_repeating_one_handle_stages_it_once(client, store, settings,
                                                              seeded: Seeded):
    data = photo(0)
    handle = await upload(client, seeded.user_token, "mly_tools_0.jpg", data)
    other = await upload(client, seeded.user_token, "mly_tools_1.jpg", photo(1))
    m = await upload(client, seeded.user_token, "uuid_rep.json",
                     _manifest([handle] * 40 + [other, handle]))
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, m, "mly_bundle_manifest"))
    assert result["imported"] == 2, result
    assert result["staged_bytes"] == len(data) + len(photo(1))
    assert result["dropped_count"] == 40
    assert {d["reason"] for d in result["dropped"]} == {
        "duplicate of image 0 (same file handle)"}


async def test_a_manifest_stops_staging_at_the_budget(tmp_path, store, seeded: Seeded):
    photos = [photo(k) for k in range(4)]
    settings = make_settings(tmp_path, upload={
        "max_expanded_bytes": len(photos[0]) + len(photos[1]) + 10})
    async with app_client(settings, store) as client:
        handles = [await upload(client, seeded.user_token, f"mly_tools_{k}.jpg", p)
                   for k, p in enumerate(photos)]
        m = await upload(client, seeded.user_token, "uuid_budget.json", _manifest(handles))
        result = await run_job(settings, store, await finish(
            client, seeded.user_token, m, "mly_bundle_manifest"))
    assert result["imported"] == 2 and result["dropped_count"] == 2, result
    assert all("max_expanded_bytes" in d["reason"] for d in result["dropped"])


async def test_staging_a_manifest_never_changes_the_uploaded_bytes(client, store, settings,
                                                                   seeded: Seeded):
    """A 2:1 photo gets a GPano packet while staged; the session keeps the bytes uploaded
    (staged files may be hard links to them)."""
    pano = photo(0, width=640, height=320)
    handle = await upload(client, seeded.user_token, "mly_tools_pano.jpg", pano)
    m = await upload(client, seeded.user_token, "uuid_pano.json", _manifest([handle]))
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, m, "mly_bundle_manifest"))
    assert result["imported"] == 1, result
    held = staged_path(settings, seeded.alice.id, "mly_tools_pano.jpg").read_bytes()
    assert hashlib.sha256(held).digest() == hashlib.sha256(pano).digest()


async def test_the_next_attempt_removes_a_killed_attempts_staging_folder(
        client, store, settings, seeded: Seeded):
    handle = await upload(client, seeded.user_token, "mly_tools_k.zip",
                          zip_of([("0.jpg", photo(0))]))
    cluster = await finish(client, seeded.user_token, handle, "zip")
    work = settings.data_dir / "uploads" / "work"
    dead = work / f"cluster-{cluster}-k1ll3d"  # what a SIGKILLed attempt leaves behind
    dead.mkdir(parents=True)
    (dead / "000000.jpg").write_bytes(photo(0))
    other = work / f"cluster-{cluster + 1}-running"  # another upload's, still in progress
    other.mkdir()
    result = await run_job(settings, store, cluster)
    assert result["imported"] == 1
    assert not dead.exists()
    assert other.exists()


async def test_cleanup_removes_staging_folders_of_finished_or_vanished_uploads(
        client, store, settings, seeded: Seeded):
    from wayview.ingest.upload_sessions import UploadSessions

    handle = await upload(client, seeded.user_token, "mly_tools_c.zip",
                          zip_of([("0.jpg", photo(0))]))
    done = await finish(client, seeded.user_token, handle, "zip")
    await run_job(settings, store, done)
    queued_handle = await upload(client, seeded.user_token, "mly_tools_q.zip",
                                 zip_of([("0.jpg", photo(1))]))
    queued = await finish(client, seeded.user_token, queued_handle, "zip")
    work = settings.data_dir / "uploads" / "work"
    left = {name: work / name for name in (f"cluster-{done}-a", f"cluster-{queued}-b",
                                           "cluster-999999999-c")}
    for folder in left.values():
        folder.mkdir(parents=True)
        (folder / "000000.jpg").write_bytes(b"x")
        os.utime(folder, (time.time() - 7200, time.time() - 7200))
    fresh = work / f"cluster-{done}-fresh"  # a run of the same upload started a moment ago
    fresh.mkdir()
    (work / "unrelated.txt").write_text("kept")
    await UploadSessions(settings, store).cleanup_expired()
    assert not left[f"cluster-{done}-a"].exists()
    assert not left["cluster-999999999-c"].exists()
    assert left[f"cluster-{queued}-b"].exists()  # its job will come back for it
    assert fresh.exists()
    assert (work / "unrelated.txt").exists()


async def test_decompression_bombs_in_an_upload_are_dropped_with_their_reason(
        client, store, settings, seeded: Seeded):
    from tests.helpers_jpeg import make_bomb, make_scan_bomb

    data = zip_of([("0.jpg", photo(0)), ("huge.jpg", make_bomb(13_300, 13_300, mode="CMYK")),
                   ("dense.jpg", make_bomb(8000, 6000, progressive=True)),
                   ("scans.jpg", make_scan_bomb())])
    handle = await upload(client, seeded.user_token, "mly_tools_bombs.zip", data)
    bomb = await upload(client, seeded.user_token, "mly_tools_bomb.jpg", make_bomb())
    m = await upload(client, seeded.user_token, "uuid_bomb.json", _manifest([bomb]))
    result = await run_job(settings, store,
                           await finish(client, seeded.user_token, handle, "zip"))
    assert result["imported"] == 1, result
    reasons = {d["item"]: d["reason"] for d in result["dropped"]}
    assert reasons["huge.jpg"].startswith("image too large: 13300×13300 pixels")
    assert reasons["dense.jpg"].startswith("implausible image: ")
    assert reasons["scans.jpg"].startswith("implausible image: 206 scans")
    manifest = await run_job(settings, store,
                             await finish(client, seeded.user_token, m, "mly_bundle_manifest"))
    assert manifest["imported"] == 0
    assert manifest["dropped"][0]["reason"].startswith("image too large")
