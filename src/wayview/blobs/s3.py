"""wayview.blobs.s3: a BlobStore on S3-compatible object storage (the scale-out deployment).

Objects live under `s3://<bucket>/<prefix>/<key>` (obstore's S3 client: request signing,
retries, multipart uploads built in). A PUT is atomic on S3: a reader sees the whole object or
none. Assets reach clients either through wayview (`proxy`, the default: no bucket policy
needed), as presigned GET URLs that expire, or from a public bucket/CDN URL.

Deadlines (issue #22): every call has a connect timeout and a request timeout, and obstore's
retries are bounded (`max_retries` within `retry_timeout_s`, backoff 0.1–1 s). The reads an
API request awaits (`get_bytes_async`, `exists_async`) run on obstore's own async runtime,
at most `max_concurrency` at once, and give up after `request_timeout_s` (waiting for a slot
included) with BlobsUnavailable: a transient 503. A store that stops answering is one outage
per process (`wayview.logs.Outage`: one line at each end); while it lasts reads fail at once
and one per 0.2 s probes. The other calls (the jobs' writes, deletes, listings) raise
BlobsUnavailable too once obstore's retries are spent on a network failure, so a job is
retried after the outage instead of failing as if the job were wrong (and parking).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import GenericError
from obstore.store import S3Store

from wayview.blobs.base import BlobInfo, check_folder, check_key
from wayview.errors import BlobsUnavailable
from wayview.logs import Outage

log = logging.getLogger("wayview.blobs")


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
        public_base_url: str = "", presign_ttl_s: int = 86_400, connect_timeout_s: float = 1.0,
        timeout_s: float = 10.0, max_retries: int = 2, retry_timeout_s: float = 3.0,
        request_timeout_s: float = 1.5, max_concurrency: int = 32,
    ) -> None:
        bucket, prefix = parse_s3_url(url)
        config: dict[str, str | bool] = {"region": region}
        if endpoint_url:
            config["endpoint"] = endpoint_url
            config["allow_http"] = endpoint_url.startswith("http://")
        if access_key_id:
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        client: Any = {"connect_timeout": dt.timedelta(seconds=connect_timeout_s),
                       "timeout": dt.timedelta(seconds=timeout_s)}
        retry: Any = {"max_retries": max_retries,
                      "retry_timeout": dt.timedelta(seconds=retry_timeout_s),
                      "backoff": {"init_backoff": dt.timedelta(milliseconds=100),
                                  "max_backoff": dt.timedelta(seconds=1), "base": 2}}
        self._store = S3Store(bucket, prefix=prefix or None, config=config,  # type: ignore[arg-type]
                              client_options=client, retry_config=retry)
        self.request_timeout_s = request_timeout_s
        self.max_concurrency = max_concurrency
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self.outage = Outage(log, "blob store (S3)", probe_timeout_s=request_timeout_s)
        if serve not in ("proxy", "presigned", "public"):
            raise ValueError(f"unknown blob serving mode {serve!r}")
        if serve == "public" and not public_base_url:
            raise ValueError("serving blobs publicly needs s3.public_base_url")
        self.serve = serve
        self.public_base_url = public_base_url.rstrip("/")
        self.presign_ttl = dt.timedelta(seconds=presign_ttl_s)

    @contextlib.contextmanager
    def _unavailable_as_transient(self) -> Iterator[None]:
        """A failure that outlived obstore's bounded retries (connection refused, timeouts,
        5xx: a GenericError) is BlobsUnavailable and part of the process's one-line outage;
        the store's definite answers (not found, 4xx such as denied) pass unchanged."""
        try:
            yield
        except GenericError as exc:
            reason = str(exc).split("\n", 1)[0][:300]
            if "Client error" in reason:  # a 4xx answer (e.g. bad credentials): not an outage
                raise
            self.outage.down(reason)
            raise _known_outage() from None
        self.outage.up()

    def put_bytes(self, key: str, data: bytes) -> None:
        """Upload `data` (one PUT: atomic)."""
        with self._unavailable_as_transient():
            obstore.put(self._store, check_key(key), data)

    def put_file(self, key: str, path: Path) -> None:
        """Upload a file (multipart for large ones; the object appears when complete)."""
        with self._unavailable_as_transient():
            obstore.put(self._store, check_key(key), Path(path))

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError if absent."""
        with self._unavailable_as_transient():
            return bytes(obstore.get(self._store, check_key(key)).bytes())

    def _slot(self) -> asyncio.Semaphore:
        """This event loop's `max_concurrency` slots for API reads."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_concurrency))
        return self._slots[1]

    async def _read(self, key: str, *, head: bool) -> bytes | None:
        """GET (or HEAD: None) one object within `request_timeout_s`; FileNotFoundError if
        absent, BlobsUnavailable if the store does not answer in time."""
        key = check_key(key)
        if not self.outage.attempt():
            raise _known_outage()
        try:
            async with asyncio.timeout(self.request_timeout_s), self._slot():
                if head:
                    await obstore.head_async(self._store, key)
                    data = None
                else:
                    result = await obstore.get_async(self._store, key)
                    data = bytes(await result.bytes_async())
        except FileNotFoundError:
            self.outage.up()
            raise
        except (ObstoreError, OSError, TimeoutError) as exc:
            if type(exc).__name__ == "NotFoundError":
                self.outage.up()
                raise FileNotFoundError(key) from None
            reason: BaseException | str = exc if not isinstance(exc, TimeoutError) else \
                f"no answer within {self.request_timeout_s:g} s"
            self.outage.down(reason)
            raise _known_outage() from None
        self.outage.up()
        return data

    async def get_bytes_async(self, key: str) -> bytes:
        """The object's bytes for an API request (deadline and outage as the module says)."""
        data = await self._read(key, head=False)
        assert data is not None
        return data

    async def exists_async(self, key: str) -> bool:
        """Whether the object exists, for an API request (a HEAD with a deadline)."""
        try:
            await self._read(key, head=True)
        except FileNotFoundError:
            return False
        return True

    def exists(self, key: str) -> bool:
        """Whether the object exists (a HEAD request)."""
        try:
            with self._unavailable_as_transient():
                obstore.head(self._store, check_key(key))
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        """Remove the object (no error when absent)."""
        try:
            with self._unavailable_as_transient():
                obstore.delete(self._store, check_key(key))
        except FileNotFoundError:
            pass

    def delete_folder(self, prefix: str) -> int:
        """Delete every object under `prefix` (listed, then deleted in batches); how many."""
        count = 0
        with self._unavailable_as_transient():
            for batch in obstore.list(self._store, prefix=check_folder(prefix),
                                      chunk_size=1000):
                paths = [meta["path"] for meta in batch]
                if paths:
                    obstore.delete(self._store, paths)
                    count += len(paths)
        return count

    def list_keys(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every object under `prefix` (LIST requests of 1000 keys)."""
        with self._unavailable_as_transient():
            for batch in obstore.list(self._store, prefix=prefix or None, chunk_size=1000):
                for meta in batch:
                    tag = (meta.get("e_tag")
                           or f"{meta['size']}:{meta['last_modified'].isoformat()}")
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


def _known_outage() -> BlobsUnavailable:
    """The error of a read refused or failed during an outage already logged."""
    error = BlobsUnavailable("blob store unavailable")
    error.logged = True
    return error
