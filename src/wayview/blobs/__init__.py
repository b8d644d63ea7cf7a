"""wayview.blobs: image bytes and derivatives behind the BlobStore protocol."""

from __future__ import annotations

from wayview.blobs.base import IMAGE_VARIANTS, THUMB_WIDTHS, BlobStore, image_blob_key
from wayview.blobs.local import LocalBlobs
from wayview.settings import Settings

__all__ = [
    "IMAGE_VARIANTS", "THUMB_WIDTHS", "BlobStore", "LocalBlobs", "image_blob_key", "open_blobs",
]


def open_blobs(settings: Settings) -> BlobStore:
    """The blob store configured by `settings`: S3 when `blobs_url` is `s3://…`, else a local
    folder in the data directory (the embedded deployment)."""
    if settings.blobs_url:
        from wayview.blobs.s3 import S3Blobs

        s3 = settings.s3
        return S3Blobs(settings.blobs_url, endpoint_url=s3.endpoint_url, region=s3.region,
                       access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
                       serve=s3.serve, public_base_url=s3.public_base_url,
                       presign_ttl_s=s3.presign_ttl_s, connect_timeout_s=s3.connect_timeout_s,
                       timeout_s=s3.timeout_s, max_retries=s3.max_retries,
                       retry_timeout_s=s3.retry_timeout_s,
                       request_timeout_s=s3.request_timeout_s,
                       max_concurrency=s3.max_concurrency)
    return LocalBlobs(settings.blobs_path)
