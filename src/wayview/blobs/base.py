"""wayview.blobs.base: the BlobStore protocol and the key scheme for image bytes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

#: Derivatives every processed image has (spec §6.1). Widths; "original" is full size.
THUMB_WIDTHS = {"thumb_256": 256, "thumb_1024": 1024, "thumb_2048": 2048}
IMAGE_VARIANTS = (*THUMB_WIDTHS, "original")
_KEY_RE = re.compile(r"[a-z0-9_]+(/[A-Za-z0-9_.-]+)*")


def image_blob_key(image_id: int, variant: str) -> str:
    """The blob key of one image variant, sharded by the id's last three digits.

    >>> image_blob_key(1933525276802129, "thumb_256")
    'images/129/1933525276802129/thumb_256.jpg'
    """
    if variant not in IMAGE_VARIANTS:
        raise ValueError(f"unknown image variant {variant!r}")
    return f"images/{image_id % 1000:03d}/{image_id}/{variant}.jpg"


def check_key(key: str) -> str:
    """Reject keys that could escape the store (`..`, absolute paths, odd characters).

    >>> check_key("images/001/1/original.jpg")
    'images/001/1/original.jpg'
    """
    if not _KEY_RE.fullmatch(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid blob key {key!r}")
    return key


class BlobStore(Protocol):
    """Bytes by key. Writes are atomic: a reader sees the whole object or nothing."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any previous object."""

    def put_file(self, key: str, path: Path) -> None:
        """Store a file's content under `key` (copied; the source stays)."""

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; raises FileNotFoundError if absent."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    def delete(self, key: str) -> None:
        """Remove the object if present."""

    def local_path(self, key: str) -> Path | None:
        """A filesystem path to serve the object from, or None for remote stores."""

    def url_for(self, key: str) -> str | None:
        """A URL clients fetch the object from directly (public bucket, presigned), or None
        when wayview serves it."""
