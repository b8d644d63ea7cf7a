"""A scale-out deployment's processes must share data_dir (issue #22 item 6): the first one
claims it in the blob store, one on another folder refuses to start in one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from wayview.blobs import LocalBlobs
from wayview.blobs.base import BlobInfo
from wayview.cli import cli
from wayview.ingest.shared_dir import MARKER_KEY, DataDirNotShared, check_shared_data_dir
from wayview.testing import make_settings

PG_URL = "postgresql://wayview@/wayview?host=/nonexistent"


class RemoteBlobs:
    """A blob store that, like S3, has no local files (a dict in memory)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, key: str, data: bytes) -> None:
        self.objects[key] = data

    def put_file(self, key: str, path: Path) -> None:
        self.objects[key] = path.read_bytes()

    def get_bytes(self, key: str) -> bytes:
        if key not in self.objects:
            raise FileNotFoundError(key)
        return self.objects[key]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def delete_folder(self, prefix: str) -> int:
        gone = [k for k in self.objects if k.startswith(prefix)]
        for k in gone:
            del self.objects[k]
        return len(gone)

    def list_keys(self, prefix: str = "") -> Iterator[BlobInfo]:
        for k, v in self.objects.items():
            if k.startswith(prefix):
                yield BlobInfo(k, len(v), str(len(v)))

    def local_path(self, key: str) -> Path | None:
        return None

    def url_for(self, key: str) -> str | None:
        return None


def test_processes_on_one_shared_data_dir_start(tmp_path: Path) -> None:
    blobs = RemoteBlobs()
    settings = make_settings(tmp_path, database_url=PG_URL)
    check_shared_data_dir(settings, blobs)  # the first: claims the folder
    assert MARKER_KEY in blobs.objects
    check_shared_data_dir(settings, blobs)  # serve, a worker: the same folder
    check_shared_data_dir(make_settings(tmp_path, database_url=PG_URL), blobs)


def test_a_process_on_another_data_dir_refuses_to_start(tmp_path: Path) -> None:
    blobs = RemoteBlobs()
    check_shared_data_dir(make_settings(tmp_path / "host-a", database_url=PG_URL), blobs)
    other = make_settings(tmp_path / "host-b", database_url=PG_URL)
    with pytest.raises(DataDirNotShared, match="not the folder the other processes"):
        check_shared_data_dir(other, blobs)
    blobs.delete(MARKER_KEY)  # adopting the new folder on purpose, as the message says
    check_shared_data_dir(other, blobs)


def test_sqlite_or_local_blobs_are_not_checked(tmp_path: Path) -> None:
    blobs = RemoteBlobs()
    check_shared_data_dir(make_settings(tmp_path / "a"), blobs)  # SQLite: one host
    assert not blobs.objects
    local = make_settings(tmp_path / "b", database_url=PG_URL)
    check_shared_data_dir(local, LocalBlobs(local.blobs_path))  # blobs in data_dir: one host


def test_the_worker_command_fails_in_one_line(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = RemoteBlobs()
    check_shared_data_dir(make_settings(tmp_path / "host-a", database_url=PG_URL), blobs)
    monkeypatch.setattr("wayview.blobs.open_blobs", lambda settings: blobs)
    monkeypatch.setenv("WAYVIEW_DATABASE_URL", PG_URL)
    monkeypatch.setenv("WAYVIEW_BLOBS_URL", "s3://bucket/prefix")
    r = CliRunner().invoke(cli, ["worker", "--drain", "--data-dir", str(tmp_path / "host-b")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "is not the folder the other processes of this deployment use" in r.output


def test_backups_leave_the_deployment_marker_out(tmp_path: Path) -> None:
    """A restore starts a deployment of its own: the live one's data_dir id must not come
    back with the blobs, or the restored data_dir (without the id) could not start."""
    from wayview.backup.create import _Mirror

    blobs = LocalBlobs(tmp_path / "blobs")
    blobs.put_bytes(MARKER_KEY, b"0123")
    blobs.put_bytes("images/001/1001/thumb_256.jpg", b"jpeg")
    mirror = _Mirror(blobs, tmp_path / "backup")
    mirror.sync()
    assert set(mirror.have) == {"images/001/1001/thumb_256.jpg"}
