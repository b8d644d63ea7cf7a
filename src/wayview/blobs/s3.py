"""wayview.blobs.s3: a BlobStore on S3-compatible object storage (the scale-out deployment).

Objects live under `s3://<bucket>/<prefix>/<key>` (obstore's S3 client: request signing,
retries, multipart uploads built in). A PUT is atomic on S3: a reader sees the whole object or
none. Assets reach clients either through wayview (`proxy`, the default: no bucket policy
needed), as presigned GET URLs that expire, or from a public bucket/CDN URL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import obstore
from obstore.store import S3Store

from wayview.blobs.base import BlobInfo, check_folder, check_key


def parse_s3_url(url: str) -> tuple[str, str]:
    """Bucket and prefix of an `s3://bucket/prefix` URL.

    >>> parse_s3_url("s3://imagery/wayview/prod/"), parse_s3_url("s3://imagery")
    (('imagery', 'wayview/prod'), ('imagery', ''))
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    return parts.netloc, parts.path.strip("/")


class S3Blobs:
    """`BlobStore` on one bucket and prefix."""

    def __init__(
        self, url: str, *, endpoint_url: str = "", region: str = "us-east-1",
        access_key_id: str = "", secret_access_key: str = "", serve: str = "proxy",
        public_base_url: str = "", presign_ttl_s: int = 86_400,
    ) -> None:
        bucket, prefix = parse_s3_url(url)
        config: dict[str, str | bool] = {"region": region}
        if endpoint_url:
            config["endpoint"] = endpoint_url
            config["allow_http"] = endpoint_url.startswith("http://")
        if access_key_id:
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        self._store = S3Store(bucket, prefix=prefix or None, config=config)  # type: ignore[arg-type]
        if serve not in ("proxy", "presigned", "public"):
            raise ValueError(f"unknown blob serving mode {serve!r}")
        if serve == "public" and not public_base_url:
            raise ValueError("serving blobs publicly needs s3.public_base_url")
        self.serve = serve
        self.public_base_url = public_base_url.rstrip("/")
        self.presign_ttl = dt.timedelta(seconds=presign_ttl_s)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload `data` (one PUT: atomic)."""
        obstore.put(self._store, check_key(key), data)

    def put_file(self, key: str, path: Path) -> None:
        """Upload a file (multipart for large ones; the object appears when complete)."""
        obstore.put(self._store, check_key(key), Path(path))

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError if absent."""
        return bytes(obstore.get(self._store, check_key(key)).bytes())

    def exists(self, key: str) -> bool:
        """Whether the object exists (a HEAD request)."""
        try:
            obstore.head(self._store, check_key(key))
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove the object (no error when absent)."""
        try:
            obstore.delete(self._store, check_key(key))
        except FileNotFoundError:
            pass

    def delete_folder(self, prefix: str) -> int:
        """Delete every object under `prefix` (listed, then deleted in batches); how many."""
        count = 0
        for batch in obstore.list(self._store, prefix=check_folder(prefix), chunk_size=1000):
            paths = [meta["path"] for meta in batch]
            if paths:
                obstore.delete(self._store, paths)
                count += len(paths)
        return count

    def list_keys(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every object under `prefix` (LIST requests of 1000 keys)."""
        for batch in obstore.list(self._store, prefix=prefix or None, chunk_size=1000):
            for meta in batch:
                tag = meta.get("e_tag") or f"{meta['size']}:{meta['last_modified'].isoformat()}"
                yield BlobInfo(meta["path"], int(meta["size"]), str(tag))

    def local_path(self, key: str) -> Path | None:
        """Remote objects have no local file."""
        check_key(key)
        return None

    def url_for(self, key: str) -> str | None:
        """Where a client fetches the object directly, or None to go through wayview."""
        key = check_key(key)
        if self.serve == "public":
            return f"{self.public_base_url}/{key}"
        if self.serve == "presigned":
            return str(obstore.sign(self._store, "GET", key, self.presign_ttl))
        return None
