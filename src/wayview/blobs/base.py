"""wayview.blobs.base: the BlobStore protocol and the key scheme for image bytes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

#: Derivatives every processed image has (spec §6.1). Widths; "original" is full size.
THUMB_WIDTHS = {"thumb_256": 256, "thumb_1024": 1024, "thumb_2048": 2048}
IMAGE_VARIANTS = (*THUMB_WIDTHS, "original")
_KEY_RE = re.compile(r"[a-z0-9_]+(/[A-Za-z0-9_.-]+)*")


#: Other public per-image assets: pyramid tiles `tile_<z>_<x>_<y>` (JPEG, §3.12) and the mesh
#: (protobuf, §6.3).
_ASSET_RE = re.compile(r"tile_([0-9]{1,2})_([0-9]{1,5})_([0-9]{1,5})|mesh")


def is_public_variant(variant: str) -> bool:
    """Whether `/media/images/{id}/{variant}` may serve this name.

    >>> [is_public_variant(v) for v in ("thumb_256", "tile_11_0_3", "mesh", "source", "tile_x")]
    [True, True, True, False, False]
    """
    return variant in IMAGE_VARIANTS or _ASSET_RE.fullmatch(variant) is not None


def tile_level(variant: str) -> int | None:
    """The pyramid level `z` of a `tile_<z>_<x>_<y>` variant, None for other variants.

    >>> tile_level("tile_11_0_3"), tile_level("thumb_256")
    (11, None)
    """
    match = _ASSET_RE.fullmatch(variant)
    return int(match[1]) if match is not None and match[1] is not None else None


def image_blob_key(image_id: int, variant: str, version: int = 0) -> str:
    """The blob key of one image variant, sharded by the id's last three digits.

    `version` is the image's media version (`Image.media_version`): 0 for the pixels made at
    ingest (the unversioned keys every image had before re-blurring existed), N ≥ 1 for the
    N-th re-blurred rendering (`wayview.pipeline.reblur`), in a folder `v<N>/` of its own so
    that its URLs differ from every earlier version's. The mesh is not made from pixels: it
    has no versions.

    >>> image_blob_key(1933525276802129, "thumb_256")
    'images/129/1933525276802129/thumb_256.jpg'
    >>> image_blob_key(1933525276802129, "tile_11_0_1"), image_blob_key(1933525276802129, "mesh")
    ('images/129/1933525276802129/tile_11_0_1.jpg', 'images/129/1933525276802129/mesh.pbf')
    >>> image_blob_key(1933525276802129, "thumb_256", 3)
    'images/129/1933525276802129/v3/thumb_256.jpg'
    """
    if not is_public_variant(variant):
        raise ValueError(f"unknown image variant {variant!r}")
    if variant == "mesh":
        return f"images/{image_id % 1000:03d}/{image_id}/mesh.pbf"
    return f"{image_version_folder(image_id, version)}{variant}.jpg"


def image_version_folder(image_id: int, version: int) -> str:
    """The folder of one media version's pixel variants (thumbnails, original, tiles); for
    version 0 it is the image's folder itself, which also holds the mesh and later versions.

    >>> image_version_folder(1933525276802129, 0), image_version_folder(1933525276802129, 2)
    ('images/129/1933525276802129/', 'images/129/1933525276802129/v2/')
    """
    version = int(version)
    if version < 0:
        raise ValueError(f"bad media version {version}")
    base = f"images/{image_id % 1000:03d}/{image_id}/"
    return base if version == 0 else f"{base}v{version}/"


def private_source_key(image_id: int) -> str:
    """The key of an image's unblurred upload: never served (`pipeline.keep_unblurred`).

    >>> private_source_key(1933525276802129)
    'private/129/1933525276802129/source.jpg'
    """
    return f"private/{image_id % 1000:03d}/{image_id}/source.jpg"


def pyramid_failure_key(image_id: int, z: int) -> str:
    """The private marker of a pyramid level that could not be rendered (never served): its
    presence answers later requests for the level without trying again.

    >>> pyramid_failure_key(1933525276802129, 9)
    'private/129/1933525276802129/tile_9.failed'
    """
    return f"private/{image_id % 1000:03d}/{image_id}/tile_{int(z)}.failed"


def image_blob_folders(image_id: int) -> list[str]:
    """The folders (key prefixes ending in "/") holding every blob of one image: its public
    variants, tiles and mesh, and its private source.

    >>> image_blob_folders(1933525276802129)
    ['images/129/1933525276802129/', 'private/129/1933525276802129/']
    """
    return [f"{top}/{image_id % 1000:03d}/{image_id}/" for top in ("images", "private")]


def check_folder(prefix: str) -> str:
    """Validate a folder prefix ("a/b/"): a valid key followed by one "/".

    >>> check_folder("images/129/1/")
    'images/129/1/'
    >>> check_folder("../x/")
    Traceback (most recent call last):
    ...
    ValueError: invalid blob key '../x'
    """
    if not prefix.endswith("/"):
        raise ValueError(f"a blob folder ends in '/': {prefix!r}")
    check_key(prefix[:-1])
    return prefix


def cluster_blob_key(sequence_id: str) -> str:
    """The key of a sequence's sfm_cluster (§6.2); `sequence_id` must be a sequence key.

    >>> cluster_blob_key("k3h9q2m1x0v8b7n6c5z4a3")
    'clusters/a3/k3h9q2m1x0v8b7n6c5z4a3.json.z'
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", sequence_id):
        raise ValueError(f"bad sequence id {sequence_id!r}")
    return f"clusters/{sequence_id[-2:]}/{sequence_id}.json.z"


def sfm_report_key(sequence_id: str) -> str:
    """The private key (never served) of a sequence's last SfM report: which images fell back
    to the GPS track and why (`wayview sfm-report`).

    >>> sfm_report_key("k3h9q2m1x0v8b7n6c5z4a3")
    'private/sfm/a3/k3h9q2m1x0v8b7n6c5z4a3.json'
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", sequence_id):
        raise ValueError(f"bad sequence id {sequence_id!r}")
    return f"private/sfm/{sequence_id[-2:]}/{sequence_id}.json"


def export_blob_key(user_id: int, export_id: int) -> str:
    """The private key (never served as media) of a user's data export, a zip (issue #17).

    >>> export_blob_key(1933525276802129, 42)
    'private/exports/129/1933525276802129/42.zip'
    """
    return f"{export_blob_folder(user_id)}{int(export_id)}.zip"


def export_blob_folder(user_id: int) -> str:
    """The folder of every data export of one user (deleting an account deletes it).

    >>> export_blob_folder(1933525276802129)
    'private/exports/129/1933525276802129/'
    """
    return f"private/exports/{int(user_id) % 1000:03d}/{int(user_id)}/"


def check_key(key: str) -> str:
    """Reject keys that could escape the store (`..`, absolute paths, odd characters).

    >>> check_key("images/001/1/original.jpg")
    'images/001/1/original.jpg'
    """
    if not _KEY_RE.fullmatch(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid blob key {key!r}")
    return key


class BlobInfo(NamedTuple):
    """One stored object as a listing sees it: `tag` changes whenever the object is
    replaced (a file's size and modification time, an S3 object's ETag)."""

    key: str
    size: int
    tag: str


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

    def delete_folder(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix` (which ends in "/"); how many."""

    def list_keys(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every object whose key starts with `prefix` ("" = all), in no particular order.
        Objects written or deleted while the listing runs may or may not be seen. Called by
        `wayview backup`."""

    def local_path(self, key: str) -> Path | None:
        """A filesystem path to serve the object from, or None for remote stores."""

    def url_for(self, key: str) -> str | None:
        """A URL clients fetch the object from directly (public bucket, presigned), or None
        when wayview serves it."""


@runtime_checkable
class AsyncReads(Protocol):
    """Reads an API request awaits with a deadline (S3): BlobsUnavailable, a transient 503,
    when the store does not answer in time, never a request queued behind a thread pool."""

    async def get_bytes_async(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError if absent."""
        ...

    async def exists_async(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...


async def read_bytes(blobs: BlobStore, key: str) -> bytes:
    """`blobs.get_bytes(key)` for an API request: awaited directly from a store with
    `AsyncReads` (S3), else in a thread (local files)."""
    if isinstance(blobs, AsyncReads):
        return await blobs.get_bytes_async(key)
    return await asyncio.to_thread(blobs.get_bytes, key)


async def blob_exists(blobs: BlobStore, key: str) -> bool:
    """`blobs.exists(key)` for an API request (as `read_bytes`)."""
    if isinstance(blobs, AsyncReads):
        return await blobs.exists_async(key)
    return await asyncio.to_thread(blobs.exists, key)
