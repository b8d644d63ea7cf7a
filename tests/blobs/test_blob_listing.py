"""BlobStore.list_keys on the local folder (S3's is exercised by the backup round trip)."""

from __future__ import annotations

from pathlib import Path

from wayview.blobs import LocalBlobs


def test_list_keys_of_local_blobs(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path / "blobs")
    keys = ["images/001/1001/thumb_256.jpg", "images/001/10011/thumb_256.jpg",
            "private/001/1001/source.jpg", "clusters/a3/k3.json.z"]
    for key in keys:
        blobs.put_bytes(key, key.encode())
    (tmp_path / "blobs" / "images" / "001" / ".tmp-unfinished").write_bytes(b"x")
    listed = {info.key: info for info in blobs.list_keys()}
    assert sorted(listed) == sorted(keys)  # temp files of unfinished writes are not objects
    assert listed[keys[0]].size == len(keys[0])
    assert sorted(i.key for i in blobs.list_keys("images/001/1001/")) == [keys[0]]
    assert sorted(i.key for i in blobs.list_keys("images/001/1001")) == keys[:2]
    assert [i.key for i in blobs.list_keys("private/")] == [keys[2]]
    before = listed[keys[0]].tag
    blobs.put_bytes(keys[0], b"replaced")
    assert next(blobs.list_keys("images/001/1001/")).tag != before
