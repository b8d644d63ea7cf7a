"""Disk limits of the upload service (issue #14, item 4): a default session size, the per-user
quota and the free-disk floor refuse an upload before a byte is written, in the upload
envelope (spec §8.6); and a malformed body never becomes a 500."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator

import pytest
from starlette.requests import ClientDisconnect

from wayview.ingest.upload_sessions import free_disk_bytes, staged_path
from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import Seeded, app_client, make_settings


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_sessions_are_bounded_by_default() -> None:
    upload = Settings(_env_file=None).upload
    assert 4 * 1024**3 <= upload.max_session_bytes <= 64 * 1024**3
    assert upload.user_quota_bytes >= upload.max_session_bytes
    assert upload.max_expanded_bytes and upload.min_free_disk_bytes


async def test_user_upload_bytes_sums_the_users_sessions(store: Store, seeded: Seeded) -> None:
    alice, bob = seeded.alice.id, seeded.bob.id
    assert await store.user_upload_bytes(alice) == 0
    await store.save_upload_session(alice, "a", handle="ha", size=100, expires_at_ms=2**40)
    await store.save_upload_session(alice, "b", handle="hb", size=23, expires_at_ms=2**40)
    await store.save_upload_session(bob, "a", handle="hc", size=1000, expires_at_ms=2**40)
    assert await store.user_upload_bytes(alice) == 123
    await store.save_upload_session(alice, "a", handle="ha", size=150, expires_at_ms=2**40)
    assert await store.user_upload_bytes(alice) == 173


async def test_quota_refuses_an_upload_before_writing_it(tmp_path, store, seeded) -> None:
    settings = make_settings(tmp_path, upload={"user_quota_bytes": 1000})
    async with app_client(settings, store) as client:
        headers = dict(auth(seeded.user_token), Offset="0")
        assert (await client.post("/upload/one", content=b"a" * 600, headers=headers)
                ).status_code == 200
        sized = await client.post("/upload/two", content=b"b" * 500, headers=headers)
        chunked = await client.post("/upload/three", content=chunks(b"c" * 500, 100),
                                    headers=headers)
        # Another user has a quota of their own.
        other = await client.post("/upload/two", content=b"b" * 500,
                                  headers=dict(auth(seeded.bob_token), Offset="0"))
    assert other.status_code == 200
    assert sized.status_code == 413
    assert sized.json() == {"debug_info": {
        "retriable": False, "type": "QuotaExceededError",
        "message": "Upload exceeds your storage quota of 1000 bytes (uploads are kept until "
                   "their handles expire)"}}
    # Without a length the POST stops where it reaches the quota; what came before is kept.
    assert chunked.status_code == 413
    assert staged_path(settings, seeded.alice.id, "three").stat().st_size == 400
    assert not staged_path(settings, seeded.alice.id, "two").exists()


async def test_quota_stops_a_chunked_body_that_outgrows_it(tmp_path, store, seeded) -> None:
    mib = 1024 * 1024
    settings = make_settings(tmp_path, upload={"user_quota_bytes": 20 * mib})
    async with app_client(settings, store) as client:
        r = await client.post("/upload/big", content=chunks(b"x" * (40 * mib), mib),
                              headers=dict(auth(seeded.user_token), Offset="0"))
    assert r.status_code == 413 and r.json()["debug_info"]["type"] == "QuotaExceededError"
    held = staged_path(settings, seeded.alice.id, "big").stat().st_size
    assert held <= 20 * mib


async def test_below_the_free_disk_floor_uploads_are_refused_retriably(
        tmp_path, store, seeded) -> None:
    free = free_disk_bytes(tmp_path)
    settings = make_settings(tmp_path, upload={"min_free_disk_bytes": free + 2**40})
    async with app_client(settings, store) as client:
        r = await client.post("/upload/full", content=b"a" * 1000,
                              headers=dict(auth(seeded.user_token), Offset="0"))
        offset = await client.get("/upload/full", headers=auth(seeded.user_token))
    assert r.status_code == 507
    assert r.headers["retry-after"] == "60"
    assert r.json() == {"debug_info": {
        "retriable": True, "type": "InsufficientStorageError",
        "message": "The server is short of disk space; try again later"}, "backoff": 60000}
    assert offset.json() == {"offset": 0}
    assert not staged_path(settings, seeded.alice.id, "full").exists()


async def test_a_sized_post_that_would_cross_the_floor_is_refused(
        tmp_path, store, seeded) -> None:
    """The floor counts the announced length: refused before the body is read."""
    free = free_disk_bytes(tmp_path)
    floor = max(0, free - 10_000_000)
    settings = make_settings(tmp_path, upload={"min_free_disk_bytes": floor})
    body = os.urandom(1000)
    async with app_client(settings, store) as client:
        small = await client.post("/upload/s", content=body,
                                  headers=dict(auth(seeded.user_token), Offset="0"))
        big = await client.post("/upload/b", content=b"\0" * 1,
                                headers={**auth(seeded.user_token), "Offset": "0",
                                         "Content-Length": "1"})
    # The filesystem's free space moves under a test; only the refusal shape is certain.
    assert small.status_code in (200, 507) and big.status_code in (200, 507)


@pytest.mark.parametrize("path", ["/logging", "/finish_upload"])
async def test_a_body_that_breaks_off_is_a_400_not_a_500(
        settings, store, seeded, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.requests import Request

    async def broken(self: Request) -> AsyncIterator[bytes]:
        yield b'{"action_type": "upl'
        raise ClientDisconnect()

    monkeypatch.setattr(Request, "stream", broken)
    async with app_client(settings, store) as client:
        r = await client.post(path, content=b'{"action_type": "upload"}',
                              headers=auth(seeded.user_token))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "OAuthException" or "message" in error
    assert "body" in error["message"].lower()


@pytest.mark.slow
def test_a_malformed_chunked_body_on_a_live_server_is_a_400(tmp_path) -> None:
    """Through granian: bad chunk sizes, a body cut short; each answer is a 400 in the Graph
    envelope (granian reports the broken body as a disconnect), never a 500."""
    from tests.acceptance.live import live_server, wayview_json

    data = tmp_path / "data"
    with live_server(data, tmp_path / "server.log", cwd=tmp_path) as server:
        wayview_json("users", "create", "u1", data_dir=data, cwd=tmp_path)
        app = wayview_json("apps", "create", "x", "--owner", "u1", data_dir=data, cwd=tmp_path)
        token = app["client_token"].encode()
        port = int(server.base_url.rsplit(":", 1)[1])
        for body in (b"zz\r\n{}\r\n0\r\n\r\n", b"5\r\n{}\r\n0\r\n\r\n", b"2\r\n{}",
                     b"FFFFFFFFFFFFFFFFFFFF\r\n{}\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"POST /logging HTTP/1.1\r\nHost: x\r\nAuthorization: OAuth "
                             + token + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
                if body == b"2\r\n{}":
                    sock.shutdown(socket.SHUT_WR)
                answer = sock.recv(4096)
            status = answer.split(b"\r\n", 1)[0]
            assert status == b"HTTP/1.1 400 Bad Request", (body, answer[:300])
            assert b"incomplete or malformed" in answer
        assert "Traceback" not in server.log_tail()


async def test_a_chunked_body_that_crosses_the_disk_floor_stops_retriably(
        tmp_path, store, seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up while a long body streams in (another writer): the POST stops at the
    next check with the retriable 507, and what was written before is kept for the resume."""
    import wayview.ingest.upload_sessions as sessions

    mib = 1024 * 1024
    readings = iter([100 * mib] + [10 * mib] * 100)  # free bytes: plenty, then short
    monkeypatch.setattr(sessions, "free_disk_bytes", lambda folder: next(readings))
    settings = make_settings(tmp_path, upload={"min_free_disk_bytes": 50 * mib})
    async with app_client(settings, store) as client:
        r = await client.post("/upload/long", content=chunks(b"x" * (40 * mib), mib),
                              headers=dict(auth(seeded.user_token), Offset="0"))
        offset = (await client.get("/upload/long", headers=auth(seeded.user_token))).json()
    assert r.status_code == 507, r.text
    assert r.json()["debug_info"]["retriable"] is True
    assert 0 < offset["offset"] < 20 * mib


async def test_a_disk_that_fills_up_mid_body_is_a_retriable_507_not_a_500(
        tmp_path, store, seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """The floor is checked every few MB; a disk filled by another writer in between makes the
    write itself fail (ENOSPC): retriable 507, what was written before kept (issue #22)."""
    import errno
    import os

    import wayview.ingest.upload_sessions as sessions

    mib = 1024 * 1024
    real_write = os.write
    budget = {"left": 3 * mib}

    def filling_write(fd: int, data: bytes | memoryview) -> int:
        if budget["left"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(data[: budget["left"]]))
        budget["left"] -= n
        return n

    monkeypatch.setattr(sessions.os, "write", filling_write)
    settings = make_settings(tmp_path, upload={"min_free_disk_bytes": 0})
    async with app_client(settings, store) as client:
        r = await client.post("/upload/filling", content=chunks(b"x" * (8 * mib), mib),
                              headers=dict(auth(seeded.user_token), Offset="0"))
        monkeypatch.setattr(sessions.os, "write", real_write)
        offset = (await client.get("/upload/filling", headers=auth(seeded.user_token))).json()
    assert r.status_code == 507, r.text
    assert r.json()["debug_info"]["retriable"] is True
    assert offset["offset"] == 3 * mib


async def test_a_store_failure_after_the_body_was_read_is_a_retriable_503(
        tmp_path, store, seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    from wayview.errors import StoreUnavailable

    settings = make_settings(tmp_path)
    real = store.save_upload_session
    calls = 0

    async def flaky(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:  # the update after the bytes are on disk
            raise StoreUnavailable("database is locked")
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "save_upload_session", flaky)
    async with app_client(settings, store) as client:
        r = await client.post("/upload/flaky", content=b"a" * 1000,
                              headers=dict(auth(seeded.user_token), Offset="0"))
    assert r.status_code == 503, r.text
    assert r.json()["debug_info"]["retriable"] is True


async def test_an_empty_post_at_the_quota_still_answers_the_handle(tmp_path, store, seeded):
    """mapillary_tools 0.12 ends every upload with an empty POST; 0.14 sends one when the
    server holds the whole file: neither may fail because the user is exactly at the quota."""
    settings = make_settings(tmp_path, upload={"user_quota_bytes": 1000})
    async with app_client(settings, store) as client:
        headers = auth(seeded.user_token)
        first = await client.post("/upload/q", content=b"a" * 1000,
                                  headers=dict(headers, Offset="0"))
        empty = await client.post("/upload/q", content=b"", headers=dict(headers, Offset="1000"))
        more = await client.post("/upload/q", content=b"b", headers=dict(headers, Offset="1000"))
    assert first.status_code == 200 and empty.status_code == 200
    assert empty.json() == first.json()
    assert more.status_code == 413
