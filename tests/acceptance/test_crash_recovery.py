"""Acceptance: a live server killed with SIGKILL mid-upload and mid-processing loses nothing and
duplicates nothing (issue #5: "uploads are resumable and atomic"; jobs survive a restart).

- Mid-upload: a POST body is cut off by killing the server while it streams; after a restart
  `GET /upload/{key}` reports what reached the disk (a true prefix of the file), the client
  resumes from there, and the finished upload becomes exactly one sequence.
- Mid-processing: the server is killed while its job runner processes an upload (OpenCV
  blurring makes each image take long enough); a restarted server takes the job over once its
  lease expires and finishes it: every image exactly once, the job done on its second attempt,
  and no image blob left behind by the killed attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.live import LiveServer, create_uploader, live_server
from tests.api.test_upload_ingest import LAT0, LON0, photo, zip_of

from wayview.ingest.upload_job import journal_owner
from wayview.model.entities import Job
from wayview.settings import Settings
from wayview.store import open_store

pytestmark = [pytest.mark.slow]

WAIT_S = 180.0
#: A short lease so the restarted server reclaims the killed attempt's job quickly.
SERVER_ENV = {"WAYVIEW_JOBS__LEASE_S": "5", "WAYVIEW_JOBS__BACKOFF_S": "0"}


@dataclass
class Account:
    root: Path
    data: Path
    token: str
    client_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"OAuth {self.token}"}


@pytest.fixture
def account(tmp_path: Path) -> Account:
    data = tmp_path / "data"
    client_token, token = create_uploader("crash_uploader", data_dir=data, cwd=tmp_path)
    return Account(tmp_path, data, token, client_token)


@contextlib.contextmanager
def server(account: Account, name: str, **env: str) -> Iterator[LiveServer]:
    with live_server(account.data, account.root / f"{name}.log", cwd=account.root,
                     env={**SERVER_ENV, **env}) as live:
        yield live


def sigkill(live: LiveServer) -> None:
    """SIGKILL the whole server process group: no shutdown handler runs."""
    os.killpg(live.process.pid, signal.SIGKILL)
    live.process.wait(timeout=10)


def wait_for(predicate: Any, what: str, live: LiveServer | None = None) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        value = predicate()
        if value:
            return value
        tail = live.log_tail() if live else ""
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{tail}"
        time.sleep(0.05)


def store_read(data: Path, fn: Any) -> Any:
    async def run() -> Any:
        store = open_store(Settings(_env_file=None, data_dir=data))
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


def jobs(data: Path) -> list[Job]:
    async def read(store: Any) -> list[Job]:
        found: list[Job] = await store.list_jobs(limit=100)
        return found

    result: list[Job] = store_read(data, read)
    return result


def images_in_area(live: LiveServer, account: Account) -> list[dict[str, Any]]:
    bbox = f"{LON0 - 0.001},{LAT0 - 0.001},{LON0 + 0.01},{LAT0 + 0.01}"
    r = httpx.get(f"{live.base_url}/images", params={"bbox": bbox, "fields": "id,sequence"},
                  headers={"Authorization": f"OAuth {account.client_token}"}, timeout=30,
                  trust_env=False)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["data"]
    return found


def offset(live: LiveServer, account: Account, key: str) -> int:
    r = httpx.get(f"{live.base_url}/upload/{key}", headers=account.auth, timeout=30,
                  trust_env=False)
    assert r.status_code == 200, r.text
    return int(r.json()["offset"])


def image_blob_dirs(data: Path) -> set[str]:
    """The image ids that have blobs (public derivatives or the private source)."""
    found = set()
    for top in ("images", "private"):
        root = data / "blobs" / top
        if root.exists():
            found |= {p.name for p in root.glob("*/*") if p.is_dir() and p.name.isdigit()}
    return found


def test_upload_cut_off_by_a_killed_server_resumes_after_restart(account: Account) -> None:
    body = zip_of([(f"{k}.jpg", photo(k, width=1600, height=1200)) for k in range(6)])
    half = len(body) // 2
    key = "mly_tools_crash.zip"
    with server(account, "first") as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = (f"POST /upload/{key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Authorization: OAuth {account.token}\r\nOffset: 0\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            sock.sendall(head + body[:half])
            # The server has written (part of) what it got: kill it before the body ends.
            wait_for(lambda: offset(first, account, key) > 0, "the first bytes on disk", first)
            sigkill(first)

    with server(account, "second") as second:
        held = offset(second, account, key)
        assert 0 < held <= half
        staged = [p for p in (account.data / "uploads").rglob("*") if p.is_file()]
        assert [p.read_bytes() for p in staged] == [body[:held]]  # a true prefix, nothing else
        with httpx.Client(base_url=second.base_url, timeout=60, trust_env=False) as http:
            wrong = http.post(f"/upload/{key}", content=body[held:],
                              headers={**account.auth, "Offset": "0"})
            assert wrong.status_code == 412, wrong.text
            r = http.post(f"/upload/{key}", content=body[held:],
                          headers={**account.auth, "Offset": str(held)})
            assert r.status_code == 200, r.text
            assert offset(second, account, key) == len(body)
            assert [p.read_bytes() for p in staged] == [body]
            r = http.post("/finish_upload", headers=account.auth,
                          json={"file_handle": r.json()["h"], "file_type": "zip"})
            assert r.status_code == 200, r.text
        found = wait_for(lambda: len(images_in_area(second, account)) == 6 and
                         images_in_area(second, account), "the processed upload", second)
        assert len({im["sequence"] for im in found}) == 1


def test_processing_killed_mid_job_is_finished_once_by_the_restarted_server(
        account: Account) -> None:
    count = 8
    body = zip_of([(f"{k}.jpg", photo(k, width=1600, height=1200)) for k in range(count)])
    # Haar-cascade blurring (the server's default) makes each image take a noticeable time.
    with server(account, "first", WAYVIEW_PIPELINE__BLURRER="opencv") as first:
        with httpx.Client(base_url=first.base_url, timeout=60, trust_env=False) as http:
            r = http.post("/upload/mly_tools_busy.zip", content=body,
                          headers={**account.auth, "Offset": "0"})
            assert r.status_code == 200, r.text
            r = http.post("/finish_upload", headers=account.auth,
                          json={"file_handle": r.json()["h"], "file_type": "zip"})
            assert r.status_code == 200, r.text
        wait_for(lambda: any(j.state == "running" for j in jobs(account.data)),
                 "the job to start", first)
        # Some images are processed (blobs written), the sequence is not stored yet.
        wait_for(lambda: image_blob_dirs(account.data), "the first derivatives", first)
        assert images_in_area(first, account) == []
        sigkill(first)

    [killed] = jobs(account.data)
    assert killed.state == "running" and killed.attempts == 1
    with server(account, "second") as second:
        wait_for(lambda: jobs(account.data)[0].state == "done", "the job to finish", second)
        found = images_in_area(second, account)
    [job] = jobs(account.data)
    assert job.attempts == 2
    assert len(found) == count and len({im["id"] for im in found}) == count
    assert len({im["sequence"] for im in found}) == 1
    # The killed attempt's derivatives were cleared: blobs exist for exactly the stored images,
    # and the journal that made that possible is empty again.
    assert image_blob_dirs(account.data) == {str(im["id"]) for im in found}
    owner = journal_owner(int(job.payload["cluster_id"]))  # type: ignore[call-overload]
    assert store_read(account.data, lambda s: s.journaled_blobs(owner)) == []
