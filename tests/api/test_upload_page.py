"""Upload from the browser (issue #18 item 5): the /upload page, its upload token and the status
URL it polls, on every store backend.

- signed out, the page sends people to /signin?next=/upload and the JSON URLs answer 401 in
  the Graph envelope;
- the page carries its limits and CSRF token, never a user token, under a strict CSP;
- an upload token needs the session, the page's CSRF token (in a header) and a same-origin
  request; it has the `upload` scope only, expires within the hour, and works with the
  upload service like a mapillary_tools token (photos, a bundle manifest, finish_upload);
- the status URL follows the upload from queued to done (sequences with their first image
  and line, dropped photos with their reason) and shows other users' uploads to no one;
- bad input is refused in the Graph envelope, never with a 500.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.api.test_web import CONFIG_SCRIPT, MANIFEST
from tests.api.webforms import sign_up

from wayview.api import upload_page, web
from wayview.auth.tokens import hash_token
from wayview.blobs import LocalBlobs
from wayview.fixtures import make_jpeg
from wayview.pipeline.worker import JobRunner
from wayview.settings import Settings
from wayview.store import Store

START = datetime(2023, 5, 1, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def static_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake web build (the page only names its files)."""
    root = tmp_path / "static"
    dist = root / "dist"
    dist.mkdir(parents=True)
    (dist / "manifest.json").write_text(json.dumps(MANIFEST))
    monkeypatch.setattr(web, "STATIC_ROOT", root)
    return root


def _config(html: str) -> dict[str, Any]:
    found = CONFIG_SCRIPT.search(html)
    assert found is not None, html
    return dict(json.loads(found.group(1)))


def _graph_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "code", "fbtrace_id"}
    return dict(error)


async def _signed_in(client: httpx.AsyncClient, username: str = "ulla") -> dict[str, Any]:
    r = await sign_up(client, username)
    assert r.status_code == 303, r.text
    page = await client.get("/upload")
    assert page.status_code == 200, page.text
    return _config(page.text)


async def _mint(client: httpx.AsyncClient, csrf: str, **headers: str) -> httpx.Response:
    return await client.post("/account/upload-token",
                             headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin",
                                      **headers})


# -- the page ---------------------------------------------------------------------------------


async def test_signed_out_visitors_are_sent_to_sign_in_and_come_back(client):
    r = await client.get("/upload")
    assert r.status_code == 303
    assert r.headers["location"] == "/signin?next=%2Fupload"
    r = await sign_up(client, "vera")  # the sign-up form carries `next` the same way
    page = await client.get("/signin?next=%2Fupload")
    assert page.status_code == 303 and page.headers["location"] == "/upload"


async def test_page_carries_limits_and_csrf_but_no_user_token(client, settings, store):
    config = await _signed_in(client)
    up = config["upload"]
    assert up["prefix"] == settings.upload.path_prefix
    assert up["maxImageBytes"] == settings.upload.max_image_bytes
    assert up["maxTimeGapS"] == settings.imports.max_time_gap_s
    assert up["maxDistanceGapM"] == settings.imports.max_distance_gap_m
    assert up["tokenUrl"] == "/account/upload-token" and up["csrf"]
    assert up["user"]["username"] == "ulla" and up["organizations"] == []
    # The map's token is the read-only embed token of /app; no user token is in the page.
    page = await client.get("/upload")
    assert "MLY" not in page.text.replace(config["token"], "")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-eval" not in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert page.headers["cache-control"] == "no-store"
    assert 'type="file"' in page.text and "multiple" in page.text


async def test_page_lists_the_organizations_to_upload_for(client, store):
    await _signed_in(client, "orla")
    orla = (await store.get_credentials("orla"))
    assert orla is not None
    org = await store.create_organization("river-mappers", name="River Mappers")
    await store.add_organization_member(org.id, orla.user.id)
    page = await client.get("/upload")
    assert _config(page.text)["upload"]["organizations"] == [{"id": str(org.id),
                                                              "name": "River Mappers"}]
    assert f'<option value="{org.id}">River Mappers</option>' in page.text


async def test_page_without_the_web_build_says_so(client, tmp_path, monkeypatch):
    await sign_up(client, "nina")
    monkeypatch.setattr(web, "STATIC_ROOT", tmp_path / "nothing-built")
    r = await client.get("/upload")
    assert r.status_code == 503 and "make install" in r.text


# -- the upload token -------------------------------------------------------------------------


async def test_token_needs_a_session_the_csrf_header_and_the_same_origin(client, store):
    signed_out = await client.post("/account/upload-token", headers={"X-CSRF-Token": "x"})
    assert _graph_error(signed_out, 401)["type"] == "OAuthException"
    config = await _signed_in(client)
    csrf = config["upload"]["csrf"]
    for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": csrf[:-2] + "xx"},
                    {"X-CSRF-Token": "a" * 5000}):
        r = await client.post("/account/upload-token", headers=headers)
        assert "upload page" in _graph_error(r, 403)["message"]
    cross = await _mint(client, csrf, **{"Sec-Fetch-Site": "cross-site"})
    assert _graph_error(cross, 403)["code"] == 10
    same_site = await _mint(client, csrf, **{"Sec-Fetch-Site": "same-site"})
    _graph_error(same_site, 403)
    # GET is not how tokens are asked for.
    _graph_error(await client.get("/account/upload-token"), 400)
    r = await _mint(client, csrf)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == upload_page.UPLOAD_TOKEN_TTL_S <= 3600
    stored = await store.get_token(hash_token(body["access_token"]))
    assert stored is not None and stored.scopes == ("upload",) and stored.kind == "user"
    assert stored.expires_at_ms is not None
    assert stored.expires_at_ms <= time.time() * 1000 + 3600 * 1000 + 5000
    # Upload only: it reads nothing of the Graph API.
    me = await client.get("/me", headers={"Authorization": f"OAuth {body['access_token']}"})
    assert _graph_error(me, 403)["code"] == 200


async def test_tokens_per_user_are_limited(client, monkeypatch):
    monkeypatch.setattr(upload_page, "UPLOAD_TOKENS_PER_HOUR", 2)
    csrf = (await _signed_in(client))["upload"]["csrf"]
    assert (await _mint(client, csrf)).status_code == 200
    assert (await _mint(client, csrf)).status_code == 200
    third = await _mint(client, csrf)
    _graph_error(third, 429)
    assert int(third.headers["retry-after"]) > 0


# -- an upload as the page does it, and the status URL ----------------------------------------


def _photo(k: int, **overrides: Any) -> bytes:
    values: dict[str, Any] = {"width": 320, "height": 240, "lat": 55.7047,
                              "lon": 13.191 + k * 0.0001,
                              "captured_at": START + timedelta(seconds=2 * k), "seed": k,
                              "compass_deg": 90.0}
    values.update(overrides)
    return make_jpeg(**values)


async def _send(client: httpx.AsyncClient, token: str, key: str, data: bytes) -> str:
    auth = {"Authorization": f"OAuth {token}"}
    held = (await client.get(f"/upload/{key}", headers=auth)).json()["offset"]
    r = await client.post(f"/upload/{key}", content=data[held:],
                          headers={**auth, "Offset": str(held)})
    assert r.status_code == 200, r.text
    return str(r.json()["h"])


async def _upload(client: httpx.AsyncClient, token: str, photos: list[bytes]) -> str:
    """What upload.js does: one session per photo, a manifest, finish_upload."""
    handles = [await _send(client, token, f"wayview_web_{hashlib.sha256(p).hexdigest()}.jpg", p)
               for p in photos]
    manifest = json.dumps({"image_handles": handles, "upload_type": "images",
                           "version": "1"}).encode()
    handle = await _send(client, token,
                         f"wayview_web_{hashlib.sha256(manifest).hexdigest()}.json", manifest)
    r = await client.post("/finish_upload", json={"file_handle": handle,
                                                  "file_type": "mly_bundle_manifest"},
                          headers={"Authorization": f"OAuth {token}"})
    assert r.status_code == 200, r.text
    return str(r.json()["cluster_id"])


async def test_page_token_uploads_and_the_status_follows_until_the_sequence_exists(
        client, store: Store, settings: Settings):
    csrf = (await _signed_in(client))["upload"]["csrf"]
    token = (await _mint(client, csrf)).json()["access_token"]
    photos = [_photo(k) for k in range(3)]
    broken = _photo(9)[:400]  # the page would not send it; the server drops it too
    cluster = await _upload(client, token, [*photos, broken])
    r = await client.get(f"/account/uploads/{cluster}")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert r.json()["state"] == "queued" and r.json()["sequences"] == []
    runner = JobRunner(settings, store, LocalBlobs(settings.blobs_path), concurrency=1)
    assert await runner.drain() >= 1
    body = (await client.get(f"/account/uploads/{cluster}")).json()
    assert body["state"] == "done" and body["imported"] == 3, body
    [sequence] = body["sequences"]
    assert sequence["images"] == 3 and len(sequence["line"]) == 3
    ids = await client.get("/image_ids", params={"sequence_id": sequence["id"]},
                           headers={"Authorization": f"OAuth {token}"})
    assert ids.status_code == 403  # the upload token reads nothing
    assert sequence["first_image_id"].isdigit()
    west, south, east, north = sequence["bbox"]
    assert west == pytest.approx(13.191) and east == pytest.approx(13.1912)
    assert south == north == pytest.approx(55.7047)
    assert body["dropped_count"] == 1
    assert body["dropped"][0]["reason"]


async def test_status_is_the_uploaders_own(client, store, settings, seeded):
    csrf = (await _signed_in(client))["upload"]["csrf"]
    token = (await _mint(client, csrf)).json()["access_token"]
    cluster = await _upload(client, token, [_photo(1)])
    # Another user's upload (alice's token) is unknown to this session, as is a made-up id.
    alices = await _upload(client, seeded.user_token, [_photo(2)])
    for unknown in (alices, "123456789012345", "9" * 19):
        error = _graph_error(await client.get(f"/account/uploads/{unknown}"), 400)
        assert error["code"] == 100 and error.get("error_subcode") == 33
    # Signed out: 401 in the Graph envelope, not a redirect to a sign-in page.
    async with httpx.AsyncClient(transport=client._transport, base_url=client.base_url) as other:
        _graph_error(await other.get(f"/account/uploads/{cluster}"), 401)


async def test_status_reports_a_parked_job_as_failed(client, store):
    csrf = (await _signed_in(client))["upload"]["csrf"]
    token = (await _mint(client, csrf)).json()["access_token"]
    cluster = await _upload(client, token, [_photo(1)])
    job = await store.claim_job("w", lease_s=60)
    assert job is not None
    assert (await client.get(f"/account/uploads/{cluster}")).json()["state"] == "processing"
    assert await store.fail_job(job.id, "w", "Traceback: secret internals", retry_in_s=None)
    body = (await client.get(f"/account/uploads/{cluster}")).json()
    assert body["state"] == "failed"
    assert "retry" in body["error"] and "internals" not in body["error"]


@pytest.mark.parametrize("path", [
    "/account/uploads/abc", "/account/uploads/-1", "/account/uploads/" + "1" * 25,
    "/account/uploads/1/extra", "/account/upload-token/x",
])
async def test_malformed_urls_are_graph_errors_not_500(client, path):
    await _signed_in(client)
    r = await client.get(path)
    assert r.status_code in (400, 401, 404), r.text
    assert "error" in r.json()


async def test_token_request_with_a_hostile_body_is_not_a_500(client):
    csrf = (await _signed_in(client))["upload"]["csrf"]
    r = await client.post("/account/upload-token", content=b"\xff" * 70_000,
                          headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert r.status_code == 200  # the body is not read: it carries nothing
    r = await client.post("/account/upload-token", content=b"{}",
                          headers={"X-CSRF-Token": b"\xc3\xa9\xff", "Content-Type": "text/plain"})
    _graph_error(r, 403)
