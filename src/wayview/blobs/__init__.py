"""wayview.blobs: image bytes and derivatives behind the BlobStore protocol."""

from __future__ import annotations

from wayview.blobs.base import IMAGE_VARIANTS, THUMB_WIDTHS, BlobStore, image_blob_key
from wayview.blobs.local import LocalBlobs
from wayview.settings import Settings

__all__ = [
    "IMAGE_VARIANTS", "THUMB_WIDTHS", "BlobStore", "LocalBlobs", "image_blob_key", "open_blobs",
]


def open_blobs(settings: Settings) -> BlobStore:
    """The blob store configured by `settings` (a local folder in the embedded deployment)."""
    return LocalBlobs(settings.blobs_path)
