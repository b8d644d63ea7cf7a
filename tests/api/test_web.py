"""The /embed page, the /app explorer and /static/ (issue #6) over the in-process client.

No browser here (tests/browser drives the pages): status codes and message pages, the
frame-friendly headers, the embed token (built-in, read-only, hashed at rest, budgeted like any
app), and the static files' cache headers and path validation. The front-end build is faked
with a tiny static folder so these run without npm.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from wayview.api import web
from wayview.auth.embed import EMBED_APP_NAME, embed_app_id
from wayview.auth.tokens import hash_token
from wayview.testing import BASE_URL, app_client, make_settings, open_test_store, seed

MANIFEST = {
    "embed.js": "embed-AAAA1111.js", "embed.css": "embed-BBBB2222.css",
    "app.js": "app-CCCC3333.js", "app.css": "app-DDDD4444.css",
    "upload.js": "upload-EEEE5555.js", "upload.css": "upload-FFFF6666.css",
    "profile.js": "profile-GGGG7777.js", "profile.css": "profile-HHHH8888.css",
    "worker": "maplibre-gl-worker-0123456789.mjs", "sprites": "sprites-abcdef0123",
    "sprite_names": "sprite-names-0123456789.json",
    "basemap_land": "basemap-land-0123456789.json",
    "basemap_borders": "basemap-borders-0123456789.json",
}
def _csp(response: Any) -> dict[str, str]:
    """The Content-Security-Policy header as {directive: sources}."""
    pairs = (part.strip().split(" ", 1) for part in
             response.headers["content-security-policy"].split(";"))
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


#: The page's configuration script (also read by the upload page's and profiles' tests).
CONFIG_SCRIPT = re.compile(r'<script type="application/json" id="wayview-config">(.*?)</script>', re.S)


@pytest.fixture
def static_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake web build: a manifest and the files it names, plus one file outside `static/`."""
    root = tmp_path / "static"
    dist = root / "dist"
    (dist / MANIFEST["sprites"]).mkdir(parents=True)
    (dist / "manifest.json").write_text(json.dumps(MANIFEST))
    for key in ("embed.js", "app.js", "upload.js", "profile.js"):
        (dist / MANIFEST[key]).write_text("export {};\n")
    for key in ("embed.css", "app.css", "upload.css", "profile.css"):
        (dist / MANIFEST[key]).write_text("body{}\n")
    (dist / MANIFEST["worker"]).write_text("self.onmessage = () => {};\n")
    (dist / MANIFEST["sprite_names"]).write_text('["regulatory--stop--g1"]')
    for key in ("basemap_land", "basemap_borders"):
        (dist / MANIFEST[key]).write_text('{"type": "FeatureCollection", "features": []}')
    (dist / MANIFEST["sprites"] / "regulatory--stop--g1.svg").write_text("<svg/>")
    (dist / ".built").write_text("")
    (dist / "notes.py").write_text("secret = 1\n")
    (tmp_path / "outside.js").write_text("outside\n")
    monkeypatch.setattr(web, "STATIC_ROOT", root)
    return root


def _config(html: str) -> dict:
    found = CONFIG_SCRIPT.search(html)
    assert found is not None, html
    return json.loads(found.group(1))


async def test_embed_page_carries_the_bundles_the_image_and_the_embed_token(
        client, seeded, static_root):
    image = seeded.images[0]
    r = await client.get(f"/embed?image_key={image.id}&style=split")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert f'src="/static/dist/{MANIFEST["embed.js"]}"' in r.text
    assert f'href="/static/dist/{MANIFEST["embed.css"]}"' in r.text
    assert 'data-style="split"' in r.text and 'id="map"' in r.text
    config = _config(r.text)
    assert config["base"] == BASE_URL and config["style"] == "split"
    assert config["image"] == {"id": str(image.id), "lng": image.lon, "lat": image.lat}
    assert config["workerUrl"] == f"/static/dist/{MANIFEST['worker']}"
    assert config["basemap"] == {"land": f"/static/dist/{MANIFEST['basemap_land']}",
                                 "borders": f"/static/dist/{MANIFEST['basemap_borders']}"}
    assert config["basemapStyleUrl"] is None
    assert config["token"].startswith("MLY|")
    # Attribution fallback without JavaScript: creator, date, the image's page here.
    assert "alice" in r.text and "2021-05-01" in r.text
    assert f"{BASE_URL}/app?pKey={image.id}&amp;focus=photo" in r.text


@pytest.mark.parametrize("style", ["photo", "split", "classic", None])
async def test_embed_styles(client, seeded, static_root, style):
    query = f"image_key={seeded.images[0].id}" + (f"&style={style}" if style else "")
    r = await client.get(f"/embed?{query}")
    assert r.status_code == 200
    assert f'data-style="{style or "photo"}"' in r.text
    assert ('id="map"' in r.text) == (style in ("split", "classic"))
    assert ('id="switch"' in r.text) == (style == "classic")


async def test_embed_headers_allow_framing_by_the_configured_ancestors(tmp_path, static_root):
    settings = make_settings(tmp_path, embed={"frame_ancestors": "https://maps.example.org"})
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store) as client:
            for path in (f"/embed?image_key={seeded.images[0].id}", "/embed?image_key=1",
                         "/embed?style=wide"):
                r = await client.get(path)
                assert _csp(r)["frame-ancestors"] == "https://maps.example.org", path
                assert "x-frame-options" not in r.headers, path


async def test_embed_default_frame_ancestors_is_any(client, seeded, static_root):
    r = await client.get(f"/embed?image_key={seeded.images[0].id}")
    assert _csp(r)["frame-ancestors"] == "*"
    assert "x-frame-options" not in r.headers


@pytest.mark.parametrize("query", ["", "image_key=", "image_key=1", "image_key=abc",
                                   "image_key=99999999999999999999", "image_key=FEATURE"])
async def test_embed_unknown_or_missing_image_is_a_404_message_page(
        client, seeded, static_root, query):
    query = query.replace("FEATURE", str(seeded.features[0].id))  # a node, not an image
    r = await client.get(f"/embed?{query}")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Image not found" in r.text and 'role="alert"' in r.text
    assert r.headers["content-security-policy"] == "frame-ancestors *"


@pytest.mark.parametrize("style", ["wide", "PHOTO", "<script>"])
async def test_embed_bad_style_is_a_400_page(client, seeded, static_root, style):
    r = await client.get("/embed", params={"image_key": str(seeded.images[0].id),
                                           "style": style})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert "Unknown style" in r.text and "<script>" not in r.text


async def test_embed_without_the_web_build_says_so(client, seeded, tmp_path, monkeypatch):
    monkeypatch.setattr(web, "STATIC_ROOT", tmp_path / "nothing-built")
    r = await client.get(f"/embed?image_key={seeded.images[0].id}")
    assert r.status_code == 503 and "make install" in r.text
    assert (await client.get("/app")).status_code == 503


async def test_embed_token_is_a_hashed_read_only_client_token_of_its_own_app(
        client, seeded, static_root, store, settings):
    r = await client.get(f"/embed?image_key={seeded.images[0].id}")
    token = _config(r.text)["token"]
    # Stable across pages and requests; the same token on /app.
    again = _config((await client.get(f"/embed?image_key={seeded.images[1].id}")).text)
    assert again["token"] == token
    assert _config((await client.get("/app")).text)["token"] == token
    stored = await store.get_token(hash_token(token))
    assert stored is not None and stored.kind == "client" and stored.user_id is None
    assert tuple(stored.scopes) == ("read",)
    app = await store.get_app(stored.app_id)
    assert app is not None and app.name == EMBED_APP_NAME and app.scopes == ("read",)
    assert not app.builtin and app.owner_id is None
    secret = token.rsplit("|", 1)[1]
    db_bytes = b"".join(p.read_bytes() for p in settings.data_dir.glob("wayview.db*"))
    assert secret.encode() not in db_bytes  # only the SHA-256 is at rest
    # It reads public data like any client token.
    auth = {"Authorization": f"OAuth {token}"}
    r = await client.get(f"/{seeded.images[0].id}?fields=id,creator", headers=auth)
    assert r.status_code == 200 and r.json()["creator"]["username"] == "alice"


async def test_embed_token_cannot_write(client, seeded, static_root):
    token = _config((await client.get(f"/embed?image_key={seeded.images[0].id}")).text)["token"]
    auth = {"Authorization": f"OAuth {token}"}
    r = await client.post("/upload/mly_tools_x.zip", content=b"zip",
                          headers={**auth, "Offset": "0"})
    assert r.status_code in (401, 403), r.text
    r = await client.post("/finish_upload", headers=auth,
                          json={"file_handle": "x", "file_type": "zip"})
    assert r.status_code in (401, 403), r.text
    r = await client.get("/me", headers=auth)
    assert r.status_code == 401  # a client token, not a user


async def test_embed_token_spends_its_own_app_budget(tmp_path, static_root):
    settings = make_settings(tmp_path, rate_limit={"graph_per_minute": 2})
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store) as client:
            page = await client.get(f"/embed?image_key={seeded.images[0].id}")
            token = _config(page.text)["token"]
            auth = {"Authorization": f"OAuth {token}"}
            path = f"/{seeded.images[0].id}?fields=id"
            assert [(await client.get(path, headers=auth)).status_code
                    for _ in range(3)] == [200, 200, 429]
            # Other apps keep their own budget; page loads are not counted.
            other = {"Authorization": f"OAuth {seeded.client_token}"}
            assert (await client.get(path, headers=other)).status_code == 200
            assert (await client.get(f"/embed?image_key={seeded.images[0].id}")).status_code \
                == 200


async def test_embed_app_deleted_by_the_operator_turns_embedding_off(tmp_path, static_root):
    settings = make_settings(tmp_path, auth={"token_cache_s": 0})
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store) as client:
            page = await client.get(f"/embed?image_key={seeded.images[0].id}")
            token = _config(page.text)["token"]
            await store.delete_app(int(token.split("|")[1]))
            r = await client.get(f"/embed?image_key={seeded.images[0].id}")
            assert r.status_code == 503 and "Embedding is disabled" in r.text
            assert (await client.get("/app")).status_code == 503
            r = await client.get(f"/{seeded.images[0].id}",
                                 headers={"Authorization": f"OAuth {token}"})
            assert r.status_code == 401


def test_embed_app_id_depends_on_the_server_secret():
    assert embed_app_id(b"a" * 32) != embed_app_id(b"b" * 32)


async def test_app_page(client, seeded, static_root):
    r = await client.get("/app")
    assert r.status_code == 200
    assert f'src="/static/dist/{MANIFEST["app.js"]}"' in r.text
    assert _csp(r)["frame-ancestors"] == "'self'"
    config = _config(r.text)
    assert "image" not in config
    first = min(seeded.images, key=lambda im: (im.captured_at_ms, im.id))
    assert config["center"] == [first.lon, first.lat]  # starts where the data are
    assert config["spritesUrl"] == f"/static/dist/{MANIFEST['sprites']}"
    image = seeded.images[3]
    # MapillaryJS's attribution link: /app/?pKey=<id>&focus=photo.
    r = await client.get(f"/app/?pKey={image.id}&focus=photo")
    assert r.status_code == 200
    assert _config(r.text)["image"] == {"id": str(image.id), "lng": image.lon, "lat": image.lat}
    assert "image" not in _config((await client.get("/app?pKey=123")).text)


async def test_map_pages_admit_only_the_origins_they_use(tmp_path, static_root):
    """Scripts come from this server only; data from this server, the operator's base map
    style, the geocoder and the extra origins named; nothing else (issue #18 item 1)."""
    settings = make_settings(tmp_path, web={
        "basemap_style_url": "https://Tiles.Example.net:8443/styles/street.json?key=k",
        "geocoder_url": "https://geo.example.org/search",
        "extra_origins": "https://glyphs.example.com, javascript:alert(1), ",
    })
    async with open_test_store(settings) as store:
        seeded = await seed(store)
        async with app_client(settings, store) as client:
            for path in ("/app", f"/embed?image_key={seeded.images[0].id}"):
                r = await client.get(path)
                assert r.status_code == 200, path
                csp = _csp(r)
                assert csp["script-src"] == "'self' 'unsafe-eval'" and csp["object-src"] == "'none'"
                allowed = set(csp["connect-src"].split())
                assert {"'self'", "https://tiles.example.net:8443", "https://geo.example.org",
                        "https://glyphs.example.com"} <= allowed, path
                assert not any("javascript" in o or "key=" in o for o in allowed), allowed
                assert "https://tiles.example.net:8443" in csp["img-src"].split()
                config = _config(r.text)
                assert config["geocoderUrl"] == "https://geo.example.org/search"
            assert _config((await client.get("/app")).text)["spriteNamesUrl"] == \
                f"/static/dist/{MANIFEST['sprite_names']}"


@pytest.mark.parametrize(("path", "media_type"), [
    (f"dist/{MANIFEST['embed.js']}", "text/javascript"),
    (f"dist/{MANIFEST['app.css']}", "text/css"),
    (f"dist/{MANIFEST['worker']}", "text/javascript"),
    (f"dist/{MANIFEST['sprites']}/regulatory--stop--g1.svg", "image/svg+xml"),
])
async def test_static_files_are_cached_for_a_year(client, static_root, path, media_type):
    r = await client.get(f"/static/{path}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(media_type)
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.content == (static_root / path).read_bytes()
    head = await client.head(f"/static/{path}")
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize("path", [
    "dist/manifest.json",                # server-side only
    "dist/.built",                       # hidden
    "dist/notes.py",                     # not a front-end file type
    "dist/missing.js",
    "dist/",
    "dist/%2e%2e/%2e%2e/outside.js",     # traversal, percent-encoded
    "%2e%2e/outside.js",
    "dist/..%2f..%2foutside.js",
    "dist/%2e%2e%5c%2e%2e%5coutside.js",  # backslashes
    "dist/embed-AAAA1111.js%00.css",
    "/etc/passwd.js",
])
async def test_static_rejects_traversal_and_unknown_files(client, static_root, path):
    r = await client.get(f"/static/{path}")
    assert r.status_code == 404, (path, r.text)
    assert "cache-control" not in r.headers


def test_static_file_stays_inside_its_root(static_root, tmp_path):
    assert web.static_file(static_root, f"dist/{MANIFEST['embed.js']}") is not None
    (static_root / "dist" / "link.js").symlink_to(tmp_path / "outside.js")
    assert web.static_file(static_root, "dist/link.js") is None  # a symlink out of the root
    for bad in ("../outside.js", "dist/../../outside.js", "dist//x.js", "dist/./x.js", ""):
        assert web.static_file(static_root, bad) is None, bad
