"""wayview.backup.restore: a backup into a new deployment (`wayview restore`).

Everything is checked before anything is written: the manifest, the SHA-256 and size of every
file, that the database snapshot reads back, that the backend matches and that the targets
are empty. A damaged backup therefore fails with one line and leaves the target untouched.
The target is the deployment `settings` configure: the data folder (SQLite, staged uploads,
the server secret, local blobs), or an empty PostgreSQL database and an S3 prefix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wayview.backup.manifest import FileEntry, read_manifest, verify
from wayview.blobs import open_blobs
from wayview.errors import InvalidInput
from wayview.settings import Settings
from wayview.store import private_dir
from wayview.store.maintenance import (
    backend_of,
    check_snapshot,
    restore_snapshot,
    table_counts,
    target_is_empty,
)

__all__ = ["RestoreReport", "restore_backup"]

_COPY_THREADS = 8


@dataclass
class RestoreReport:
    """What `restore_backup` did."""

    manifest: dict[str, Any]
    files: int = 0
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def mismatched(self) -> dict[str, tuple[int, int]]:
        """Tables whose restored row count differs from the backup's: (backup, restored)."""
        expected: dict[str, int] = self.manifest.get("counts", {})
        return {table: (n, self.counts.get(table, 0)) for table, n in expected.items()
                if self.counts.get(table, 0) != n}


def _copy_file(source: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


def _clear(settings: Settings) -> None:
    """`--force`: remove what a restore writes into the data folder."""
    data = settings.data_dir
    for name in ("wayview.db", "wayview.db-wal", "wayview.db-shm", "secret_key"):
        with contextlib.suppress(FileNotFoundError):
            (data / name).unlink()
    for name in ("blobs", "uploads"):
        shutil.rmtree(data / name, ignore_errors=True)


def _check_targets(settings: Settings, backend: str, force: bool) -> None:
    data = settings.data_dir
    if data.exists() and not data.is_dir():
        raise InvalidInput(f"{data} is not a folder")
    if data.is_dir() and any(data.iterdir()) and not force:
        raise InvalidInput(f"{data} is not empty: restore into a new data folder (--force "
                           "replaces its database, blobs, staged uploads and secret)")
    if backend == "postgresql" and not target_is_empty(settings):
        raise InvalidInput("the target PostgreSQL database is not empty: restore into a new "
                           "database (CREATE DATABASE …)")
    if settings.blobs_url and not force:
        if next(iter(open_blobs(settings).list_keys()), None) is not None:
            raise InvalidInput(f"{settings.blobs_url} already holds objects: restore into an "
                               "empty prefix (--force writes over it)")


def restore_backup(settings: Settings, source: Path, *, force: bool = False,
                   progress: Callable[[str], None] | None = None) -> RestoreReport:
    """Restore the backup in `source` into the deployment `settings` configure.

    The store is not opened here: the caller opens it afterwards, which applies the
    migrations of a backup made by an older release.

    Raises:
        BackupDamaged: the backup is incomplete or altered (nothing was written).
        InvalidInput: the targets are not empty, or the backup is of the other backend.
    """
    say = progress or (lambda message: None)
    started = time.monotonic()
    manifest = read_manifest(source)
    say("verifying checksums")
    entries = verify(source, manifest)
    backend = str(manifest["backend"])
    if backend != backend_of(settings):
        restore_snapshot(settings, backend, source / manifest["database"])  # raises: which
    check_snapshot(backend, source / manifest["database"])
    _check_targets(settings, backend, force)
    if force:
        _clear(settings)
    private_dir(settings.data_dir)
    say("restoring the database")
    restore_snapshot(settings, backend, source / manifest["database"])
    blob_entries = [e for e in entries if e.path.startswith("blobs/")]
    say(f"restoring {len(blob_entries)} blobs")
    if settings.blobs_url:
        blobs = open_blobs(settings)

        def put(entry: FileEntry) -> None:
            blobs.put_file(entry.path.removeprefix("blobs/"), source / entry.path)

        with ThreadPoolExecutor(_COPY_THREADS) as pool:
            list(pool.map(put, blob_entries))
    else:
        for entry in blob_entries:
            _copy_file(source / entry.path, settings.blobs_path / entry.path.removeprefix(
                "blobs/"))
    for entry in entries:
        if entry.path.startswith("uploads/") or entry.path == "secret_key":
            _copy_file(source / entry.path, settings.data_dir / entry.path)
    os.sync()
    report = RestoreReport(manifest, files=len(entries))
    report.counts = table_counts(settings)
    report.seconds = round(time.monotonic() - started, 3)
    return report
