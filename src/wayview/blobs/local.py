"""wayview.blobs.local: a BlobStore on a local folder (the embedded default)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from wayview.blobs.base import BlobInfo, check_folder, check_key


class LocalBlobs:
    """Objects as files under `root`; writes go to a temp file, fsync, then rename."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically."""
        self._write(key, lambda fh: fh.write(data))

    def put_file(self, key: str, path: Path) -> None:
        """Copy a file into the store atomically."""

        def copy(fh: BinaryIO) -> None:
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh)

        self._write(key, copy)

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes."""
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the object if present."""
        self._path(key).unlink(missing_ok=True)

    def delete_folder(self, prefix: str) -> int:
        """Remove the folder `prefix` and everything in it; how many files it held."""
        folder = self.root / check_folder(prefix)[:-1]
        if not folder.is_dir() or folder.is_symlink():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def list_keys(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every stored file under `prefix` (temp files of unfinished writes are not objects)."""
        root = str(self.root)
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = os.path.relpath(folder, root)
            base = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            if prefix and not (base.startswith(prefix) or prefix.startswith(base)):
                dirs[:] = []
                continue
            for name in files:
                key = base + name
                if name.startswith(".") or not key.startswith(prefix):
                    continue
                try:
                    stat = os.stat(os.path.join(folder, name), follow_symlinks=False)
                except FileNotFoundError:  # deleted since the folder was read
                    continue
                yield BlobInfo(key, stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}")

    def local_path(self, key: str) -> Path | None:
        """The file serving this object."""
        return self._path(key)

    def url_for(self, key: str) -> str | None:
        """Local objects are served by wayview."""
        check_key(key)
        return None
