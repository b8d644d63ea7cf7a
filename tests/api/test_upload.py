"""Upload service (spec §8): offsets, resume, 412, the upload envelope, scopes, per-user sessions,
interrupted bodies, finish_upload (idempotent, E24–E26), /logging and session cleanup."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from wayview.api.app import create_app
from wayview.auth.tokens import issue_user_token
from wayview.blobs import LocalBlobs
from wayview.ingest.upload_finish import INGEST_JOB
from wayview.ingest.upload_sessions import UploadSessions, staged_path
from wayview.settings import Settings
from wayview.store import Store
from wayview.testing import Seeded, app_client, make_settings

U2 = {"debug_info": {"retriable": True, "type": "OffsetInvalidError",
                     "message": "Request starting offset is invalid"}}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"OAuth {token}"}


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def stored(settings: Settings, user_id: int, key: str) -> bytes:
    return staged_path(settings, user_id, key).read_bytes()


async def post(client: httpx.AsyncClient, key: str, token: str, body: bytes | AsyncIterator[bytes],
               offset: int | None = 0, **headers: str) -> httpx.Response:
    sent = dict(auth(token), **headers)
    if offset is not None:
        sent["Offset"] = str(offset)
    return await client.post(f"/upload/{key}", content=body, headers=sent)


async def test_unknown_session_has_offset_zero(client, seeded):
    r = await client.get("/upload/mly_tools_0123abcd.jpg", headers=auth(seeded.user_token))
    assert r.status_code == 200 and r.json() == {"offset": 0}


async def test_sized_post_stores_the_bytes_and_answers_a_handle(client, seeded, settings):
    data = bytes(range(256)) * 100
    r = await post(client, "mly_tools_a.zip", seeded.user_token, data,
                   **{"X-Entity-Name": "mly_tools_a.zip", "X-Entity-Type": "application/zip",
                      "X-Entity-Length": str(len(data)), "X-Entity-Whatever": "1"})
    assert r.status_code == 200, r.text
    handle = r.json()["h"]
    assert isinstance(handle, str) and handle and "/" not in handle
    assert stored(settings, seeded.alice.id, "mly_tools_a.zip") == data
    r = await client.get("/upload/mly_tools_a.zip", headers=auth(seeded.user_token))
    assert r.json() == {"offset": len(data)}


async def test_chunked_post_resumes_from_the_offset_with_the_same_handle(client, seeded, settings):
    data = b"0123456789" * 50_000  # 500 kB
    first = await post(client, "k.mp4", seeded.user_token, chunks(data[:123_457], 10_000))
    assert first.status_code == 200, first.text
    offset = (await client.get("/upload/k.mp4", headers=auth(seeded.user_token))).json()["offset"]
    assert offset == 123_457
    second = await post(client, "k.mp4", seeded.user_token, chunks(data[offset:], 64_000),
                        offset=offset)
    assert second.status_code == 200, second.text
    assert second.json()["h"] == first.json()["h"]
    assert stored(settings, seeded.alice.id, "k.mp4") == data
    # Everything held already: an empty POST at the end answers the handle again.
    again = await post(client, "k.mp4", seeded.user_token, b"", offset=len(data))
    assert again.status_code == 200 and again.json()["h"] == first.json()["h"]


async def test_missing_offset_header_counts_as_zero(client, seeded, settings):
    r = await post(client, "no-offset", seeded.user_token, b"abc", offset=None)
    assert r.status_code == 200, r.text
    r = await post(client, "no-offset", seeded.user_token, b"def", offset=None)
    assert r.status_code == 412 and r.json() == U2
    assert stored(settings, seeded.alice.id, "no-offset") == b"abc"


@pytest.mark.parametrize("offset", ["5", "2", "-1", "x", "99999999999999999999999"])
async def test_wrong_offset_is_412_and_keeps_the_bytes(client, seeded, settings, offset):
    assert (await post(client, "s", seeded.user_token, b"abc")).status_code == 200
    r = await client.post("/upload/s", content=b"zzz",
                          headers={**auth(seeded.user_token), "Offset": offset})
    assert r.status_code == 412
    assert r.json() == U2
    assert stored(settings, seeded.alice.id, "s") == b"abc"


async def test_upload_errors_use_the_upload_envelope(client, seeded):
    r = await client.get("/upload/x")
    assert r.status_code == 401
    assert r.json() == {"debug_info": {"retriable": False, "type": "NotAuthorizedError",
                                       "message": "Invalid OAuth 2.0 Access Token"}}
    r = await client.post("/upload/x", content=b"a", headers=auth("MLYnotatoken" + "x" * 40))
    assert r.status_code == 401 and r.json()["debug_info"]["type"] == "NotAuthorizedError"
    # A client token is no uploader.
    r = await client.post("/upload/x", content=b"a", headers=auth(seeded.client_token))
    assert r.status_code == 401
    assert r.json()["debug_info"]["message"].endswith("A user access token is required for "
                                                      "this request.")
    # Graph endpoints keep the Graph envelope.
    r = await client.get("/me")
    assert r.status_code == 401 and r.json()["error"]["code"] == 190


async def test_upload_scope_is_required(client, store, seeded):
    token = (await issue_user_token(store, seeded.alice, scopes=("read",))).access_token
    r = await post(client, "scoped", token, b"abc")
    assert r.status_code == 403
    assert r.json() == {"debug_info": {
        "retriable": False, "type": "NotAuthorizedError",
        "message": "Permissions error: the access token does not have the 'upload' scope."}}
    r = await client.post("/finish_upload", headers=auth(token),
                          json={"file_handle": "h", "file_type": "zip"})
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "OAuthException" and r.json()["error"]["code"] == 200


async def test_sessions_are_scoped_per_user(client, seeded, settings):
    key = "mly_tools_same.jpg"
    ra = await post(client, key, seeded.user_token, b"alice's bytes")
    rb = await post(client, key, seeded.bob_token, b"bob")
    assert ra.status_code == rb.status_code == 200
    assert ra.json()["h"] != rb.json()["h"]
    assert (await client.get(f"/upload/{key}", headers=auth(seeded.bob_token))).json() == {
        "offset": 3}
    assert stored(settings, seeded.alice.id, key) == b"alice's bytes"
    assert stored(settings, seeded.bob.id, key) == b"bob"
    # Bob cannot finish Alice's handle (E24).
    r = await client.post("/finish_upload", headers=auth(seeded.bob_token),
                          json={"file_handle": ra.json()["h"], "file_type": "zip"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Invalid parameter file_handle: unknown file handle"


async def test_session_keys_never_become_paths(client, seeded, settings):
    for key in ("...", "mly_tools_ä ö.jpg", "~$x;y=z"):
        r = await post(client, key, seeded.user_token, b"abc")
        assert r.status_code == 200, (key, r.text)
    # An encoded slash makes it another path, not a session.
    r = await post(client, "a%2F..%2F..%2Fescape", seeded.user_token, b"abc")
    assert r.status_code == 400
    uploads = settings.data_dir / "uploads"
    files = sorted(p for p in uploads.rglob("*") if p.is_file())
    assert len(files) == 3
    for path in files:
        assert path.parent == uploads / str(seeded.alice.id)
        assert len(path.name) == 64 and set(path.name) <= set("0123456789abcdef")


async def test_an_interrupted_post_keeps_what_arrived(settings, store, seeded):
    """The client goes away mid-body: the bytes received stay and the offset reports them."""
    app = create_app(settings, store=store, blobs=LocalBlobs(settings.blobs_path))
    data = b"x" * 300_000 + b"y" * 300_000
    parts = [data[:200_000], data[200_000:450_000]]
    messages: list[dict[str, object]] = [
        {"type": "http.request", "body": part, "more_body": True} for part in parts
    ] + [{"type": "http.disconnect"}]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/upload/cut.zip", "raw_path": b"/upload/cut.zip",
        "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
        "server": ("wayview.test", 80), "client": ("127.0.0.1", 5000),
        "headers": [(b"authorization", f"OAuth {seeded.user_token}".encode()),
                    (b"offset", b"0"), (b"transfer-encoding", b"chunked")],
    }
    await app(scope, receive, send)
    assert stored(settings, seeded.alice.id, "cut.zip") == data[:450_000]
    async with app_client(settings, store) as client:
        r = await client.get("/upload/cut.zip", headers=auth(seeded.user_token))
        assert r.json() == {"offset": 450_000}
        r = await post(client, "cut.zip", seeded.user_token, data[450_000:], offset=450_000)
        assert r.status_code == 200, r.text
    assert stored(settings, seeded.alice.id, "cut.zip") == data


async def test_concurrent_posts_to_one_session_do_not_interleave(settings, store, seeded):
    async with app_client(settings, store) as client:
        slow_started = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield b"A" * 10_000
                slow_started.set()
                await asyncio.sleep(0.005)

        async def second() -> httpx.Response:
            await slow_started.wait()
            return await post(client, "race", seeded.user_token, b"B" * 50_000)

        first, other = await asyncio.gather(post(client, "race", seeded.user_token, slow()),
                                            second())
    assert first.status_code == 200, first.text
    assert other.status_code == 412 and other.json() == U2
    assert stored(settings, seeded.alice.id, "race") == b"A" * 200_000


async def test_too_large_is_413_and_keeps_nothing_of_that_post(tmp_path, store, seeded):
    settings = make_settings(tmp_path, upload={"max_session_bytes": 1000})
    async with app_client(settings, store) as client:
        assert (await post(client, "big", seeded.user_token, b"a" * 600)).status_code == 200
        sized = await post(client, "big", seeded.user_token, b"b" * 500, offset=600)
        chunked = await post(client, "big", seeded.user_token, chunks(b"c" * 500, 100),
                             offset=600)
        for r in (sized, chunked):
            assert r.status_code == 413
            assert r.json() == {"debug_info": {
                "retriable": False, "type": "FileTooLargeError",
                "message": "Upload exceeds the maximum size of 1000 bytes"}}
        assert stored(settings, seeded.alice.id, "big") == b"a" * 600
        assert (await post(client, "big", seeded.user_token, b"d" * 400, offset=600)
                ).status_code == 200


async def test_upload_rate_limit_is_429_with_backoff(tmp_path, store, seeded):
    settings = make_settings(tmp_path, rate_limit={"upload_per_minute": 1})
    async with app_client(settings, store) as client:
        assert (await client.get("/upload/r", headers=auth(seeded.user_token))).status_code == 200
        r = await client.get("/upload/r", headers=auth(seeded.user_token))
    assert r.status_code == 429
    body = r.json()
    assert body["debug_info"] == {"retriable": True, "type": "RequestRateLimitedError",
                                  "message": "Request rate limit has been exceeded"}
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert body["backoff"] == int(r.headers["retry-after"]) * 1000


# -- finish_upload ---------------------------------------------------------------------------


def tiny_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("0.jpg", b"\xff\xd8\xff not really")
    return buf.getvalue()


async def upload(client: httpx.AsyncClient, token: str, key: str, data: bytes) -> str:
    r = await post(client, key, token, data)
    assert r.status_code == 200, r.text
    return str(r.json()["h"])


async def test_finish_upload_is_idempotent_and_queues_one_job(client, store, seeded):
    handle = await upload(client, seeded.user_token, "mly_tools_z.zip", tiny_zip())
    body = {"file_handle": handle, "file_type": "zip"}
    first = await client.post("/finish_upload", headers=auth(seeded.user_token), json=body)
    assert first.status_code == 200, first.text
    cluster_id = first.json()["cluster_id"]
    assert isinstance(cluster_id, str) and cluster_id.isdigit()
    assert len(cluster_id) in (15, 16) and int(cluster_id) < 2**53  # graph-style (spec §8.1)
    second = await client.post("/finish_upload", headers=auth(seeded.user_token), json=body)
    assert second.json() == {"cluster_id": cluster_id}
    finish = await store.get_upload_finish(int(cluster_id))
    assert finish is not None and finish.job_id is not None and finish.file_type == "zip"
    job = await store.enqueue_job(INGEST_JOB, {"cluster_id": int(cluster_id)},
                                  dedupe_key=f"{INGEST_JOB}:{cluster_id}")
    assert job.id == finish.job_id  # still the one pending job
    # The handle stays usable after a finish (a later manifest may name it again).
    r = await client.get("/upload/mly_tools_z.zip", headers=auth(seeded.user_token))
    assert r.json()["offset"] == len(tiny_zip())


@pytest.mark.parametrize(("body", "message"), [
    ({"file_handle": "nope", "file_type": "zip"},
     "Invalid parameter file_handle: unknown file handle"),
    ({"file_handle": "nope", "file_type": "mly_gopro_video"},
     "Invalid parameter file_type: mly_gopro_video"),
    ({"file_type": "zip"}, "Missing required parameter file_handle"),
    ({"file_handle": "nope"}, "Missing required parameter file_type"),
])
async def test_finish_upload_errors(client, seeded, body, message):
    r = await client.post("/finish_upload", headers=auth(seeded.user_token), json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["message"] == message and error["type"] == "MLYApiException"
    assert error["code"] == 100 and "fbtrace_id" in error


async def test_finish_upload_needs_a_user_token(client, seeded):
    r = await client.post("/finish_upload", headers=auth(seeded.client_token),
                          json={"file_handle": "h", "file_type": "zip"})
    assert r.status_code == 401
    assert r.json()["error"]["message"] == ("Error validating access token: A user access "
                                            "token is required for this request.")


@pytest.mark.parametrize("as_text", [False, True])
async def test_finish_upload_checks_organization_membership(client, store, seeded, as_text):
    handle = await upload(client, seeded.bob_token, "mly_tools_b.zip", tiny_zip())
    org = str(seeded.org.id) if as_text else seeded.org.id
    body = {"file_handle": handle, "file_type": "zip", "organization_id": org}
    r = await client.post("/finish_upload", headers=auth(seeded.bob_token), json=body)
    assert r.status_code == 403
    assert r.json()["error"]["message"] == (
        f"Permission denied: not a member of organization {seeded.org.id}")
    assert r.json()["error"]["code"] == 10 and r.json()["error"]["type"] == "MLYApiException"
    await store.add_organization_member(seeded.org.id, seeded.bob.id)
    r = await client.post("/finish_upload", headers=auth(seeded.bob_token), json=body)
    assert r.status_code == 200, r.text
    finish = await store.get_upload_finish(int(r.json()["cluster_id"]))
    assert finish is not None and finish.organization_id == seeded.org.id


def manifest(handles: list[str], **changes: object) -> bytes:
    body: dict[str, object] = {"image_handles": handles, "upload_type": "images", "version": "1"}
    body.update(changes)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


async def test_manifest_is_validated_before_answering(client, seeded):
    mine = await upload(client, seeded.user_token, "mly_tools_1.jpg", b"\xff\xd8\xffjpeg")
    bobs = await upload(client, seeded.bob_token, "mly_tools_2.jpg", b"\xff\xd8\xffother")
    cases = {
        "uuid_bad_json.json": (b"{not json", "not a valid bundle manifest: not JSON"),
        "uuid_version.json": (manifest([mine], version="2"),
                              'not a valid bundle manifest: version must be "1"'),
        "uuid_type.json": (manifest([mine], upload_type="video"),
                           'not a valid bundle manifest: upload_type must be "images"'),
        "uuid_empty.json": (manifest([]), "not a valid bundle manifest: image_handles is empty"),
        "uuid_foreign.json": (manifest([mine, bobs]), "the manifest names an unknown file handle"),
    }
    for key, (data, reason) in cases.items():
        handle = await upload(client, seeded.user_token, key, data)
        r = await client.post("/finish_upload", headers=auth(seeded.user_token),
                              json={"file_handle": handle, "file_type": "mly_bundle_manifest"})
        assert r.status_code == 400, key
        assert r.json()["error"]["message"] == f"Invalid parameter file_handle: {reason}", key
    good = await upload(client, seeded.user_token, "uuid_good.json", manifest([mine, mine]))
    r = await client.post("/finish_upload", headers=auth(seeded.user_token),
                          json={"file_handle": good, "file_type": "mly_bundle_manifest"})
    assert r.status_code == 200, r.text


async def test_logging_answers_200(client, seeded):
    r = await client.post("/logging", headers=auth(seeded.client_token),
                          json={"action_type": "upload_started_upload", "properties": {"a": 1}})
    assert r.status_code == 200 and r.json() == {}


async def test_organization_reads_as_mapillary_tools_does(client, seeded):
    r = await client.get(f"/{seeded.org.id}", params={"fields": "slug,description,name"},
                         headers=auth(seeded.user_token))
    assert r.status_code == 200
    assert r.json() == {"slug": "acme", "description": "Test org", "name": "Acme Mapping",
                        "id": str(seeded.org.id)}


async def test_expired_sessions_are_cleaned_up(client, store, seeded, settings):
    handle = await upload(client, seeded.user_token, "old.zip", tiny_zip())
    path = staged_path(settings, seeded.alice.id, "old.zip")
    sessions = UploadSessions(settings, store)
    assert await sessions.cleanup_expired() == 0 and path.exists()
    later_ms = int(time.time() * 1000) + settings.upload.handle_ttl * 1000 + 60_000
    assert await sessions.cleanup_expired(now_ms=later_ms) == 1
    assert not path.exists()
    assert (await client.get("/upload/old.zip", headers=auth(seeded.user_token))).json() == {
        "offset": 0}
    r = await client.post("/finish_upload", headers=auth(seeded.user_token),
                          json={"file_handle": handle, "file_type": "zip"})
    assert r.status_code == 400


def test_handle_ttl_is_at_least_48_hours(tmp_path: Path):
    with pytest.raises(ValueError, match="172800"):
        make_settings(tmp_path, upload={"handle_ttl": 3600})
    assert Settings(_env_file=None).upload.handle_ttl == 7 * 86_400  # type: ignore[call-arg]


async def test_upload_prefix_is_a_setting(tmp_path, store: Store, seeded: Seeded):
    settings = make_settings(tmp_path, upload={"path_prefix": "/rupload/public"})
    async with app_client(settings, store) as client:
        r = await client.post("/rupload/public/k", content=b"abc",
                              headers={**auth(seeded.user_token), "Offset": "0"})
        assert r.status_code == 200 and "h" in r.json()
