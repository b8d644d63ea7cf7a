"""wayview.backup.manifest: the layout of a backup folder, its manifest and checksums.

```
DEST/                       0700 (the backup holds secrets)
├── manifest.json           written last: a folder without it is an unfinished backup
├── files.tsv               sha256 <TAB> size <TAB> path, one line per file below, sorted
├── database/wayview.db     the SQLite snapshot, or database/wayview.pgdump (pg_dump -Fc)
├── blobs/<key>             every blob (images, thumbnails, tiles, clusters, exports, …)
├── uploads/<user>/<hash>   staged upload sessions (see docs/backup.md)
└── secret_key              the server secret, when it lives in the data folder
```
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from wayview.errors import InvalidInput

__all__ = ["FILES", "FORMAT", "FORMAT_VERSION", "MANIFEST", "BackupDamaged", "FileEntry",
           "copy_hashed", "files_text", "hash_file", "read_manifest", "verify", "write_private"]

MANIFEST = "manifest.json"
FILES = "files.tsv"
FORMAT = "wayview-backup"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


class BackupDamaged(InvalidInput):
    """The backup is incomplete, altered or not a wayview backup (nothing was restored)."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a backup: its path relative to the backup folder, size and SHA-256."""

    path: str
    size: int
    sha256: str

    def line(self) -> str:
        """Its line in `files.tsv`."""
        return f"{self.sha256}\t{self.size}\t{self.path}\n"


def write_private(path: Path, data: bytes) -> None:
    """Write a new file readable by its owner only (0600), flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def copy_hashed(source: BinaryIO, target: Path) -> tuple[int, str]:
    """Copy a stream into the new file `target` (0600); its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def hash_file(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def files_text(entries: Iterable[FileEntry]) -> bytes:
    """The content of `files.tsv`."""
    return "".join(e.line() for e in sorted(entries, key=lambda e: e.path)).encode("utf-8")


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of the backup in `root`; raises BackupDamaged when it is not a complete
    wayview backup this version can read."""
    path = root / MANIFEST
    if not root.is_dir():
        raise BackupDamaged(f"no backup folder at {root}")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise BackupDamaged(f"{root} has no {MANIFEST}: not a wayview backup, or an "
                            "unfinished one") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupDamaged(f"{MANIFEST} is damaged: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupDamaged(f"{root} is not a wayview backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupDamaged(f"backup format {manifest.get('format_version')} is not known to "
                            f"this wayview (it reads format {FORMAT_VERSION})")
    return manifest


def _parse_files(root: Path, manifest: dict[str, Any]) -> list[FileEntry]:
    try:
        data = (root / FILES).read_bytes()
    except FileNotFoundError:
        raise BackupDamaged(f"{FILES} is missing") from None
    if hashlib.sha256(data).hexdigest() != manifest.get("files_sha256"):
        raise BackupDamaged(f"{FILES} does not match the manifest's checksum")
    entries = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        sha, size, rel = line.split("\t", 2)
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or not parts:
            raise BackupDamaged(f"{FILES} line {number}: bad path {rel!r}")
        entries.append(FileEntry(rel, int(size), sha))
    return entries


def verify(root: Path, manifest: dict[str, Any]) -> list[FileEntry]:
    """Check every file of the backup against `files.tsv` (size and SHA-256) and that list
    against the manifest; the entries. Raises BackupDamaged naming the first bad file."""
    entries = _parse_files(root, manifest)
    for entry in entries:
        path = root / entry.path
        try:
            size, sha = hash_file(path)
        except FileNotFoundError:
            raise BackupDamaged(f"{entry.path} is missing from the backup") from None
        if size != entry.size:
            raise BackupDamaged(f"{entry.path} has {size} bytes, the backup recorded "
                                f"{entry.size}")
        if sha != entry.sha256:
            raise BackupDamaged(f"{entry.path} does not match its SHA-256 checksum")
    return entries
