"""wayview.api.web: the `/embed` viewer page, the `/app` explorer and their `/static/` files.

Issue #6. The pages are Jinja templates around the front-end bundles that `web/` builds into
`api/static/dist` (`make install` runs that build). They need no user login: they hand the
browser the embed token (`auth.embed`), a client token of a built-in read-only app that is
rate-limited like any app. Every static file has a content-hashed name, so it is served
`immutable` for a year; `dist/manifest.json` maps the logical names to the hashed ones.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from wayview.api.errors import AssetNotFound
from wayview.auth.embed import EmbedDisabled, embed_token
from wayview.blobs import image_blob_key
from wayview.ids import parse_id
from wayview.model.entities import Image, ImageSearch

if TYPE_CHECKING:
    from wayview.api.app import Context

STATIC_ROOT = Path(__file__).resolve().parent / "static"
MANIFEST = "dist/manifest.json"
STYLES = ("photo", "split", "classic")
DEFAULT_STYLE = "photo"
STATIC_CACHE = "public, max-age=31536000, immutable"
_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_templates = Environment(
    loader=PackageLoader("wayview.api", "templates"),
    autoescape=select_autoescape(default=True),
    auto_reload=False,
)


@dataclass(frozen=True, slots=True)
class Assets:
    """URLs of the built front-end files (None when `web/` was never built)."""

    embed_js: str
    embed_css: str
    app_js: str
    app_css: str
    upload_js: str
    upload_css: str
    profile_js: str
    profile_css: str
    worker: str
    sprites: str
    sprite_names: str
    basemap_land: str
    basemap_borders: str


_assets_cache: dict[Path, tuple[int, Assets]] = {}


def _assets(root: Path) -> Assets | None:
    """The build manifest, read again only when its file changed (a rebuild)."""
    try:
        mtime_ns = (root / MANIFEST).stat().st_mtime_ns
        cached = _assets_cache.get(root)
        if cached is not None and cached[0] == mtime_ns:
            return cached[1]
        manifest = json.loads((root / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    url = "/static/dist/{}".format
    try:
        assets = Assets(embed_js=url(manifest["embed.js"]), embed_css=url(manifest["embed.css"]),
                        app_js=url(manifest["app.js"]), app_css=url(manifest["app.css"]),
                        upload_js=url(manifest["upload.js"]),
                        upload_css=url(manifest["upload.css"]),
                        profile_js=url(manifest["profile.js"]),
                        profile_css=url(manifest["profile.css"]),
                        worker=url(manifest["worker"]), sprites=url(manifest["sprites"]),
                        sprite_names=url(manifest["sprite_names"]),
                        basemap_land=url(manifest["basemap_land"]),
                        basemap_borders=url(manifest["basemap_borders"]))
    except (KeyError, TypeError):
        return None
    _assets_cache[root] = (mtime_ns, assets)
    return assets


def static_file(root: Path, path: str) -> Path | None:
    """The file `path` names under `root`, or None: every segment must be a plain name (no
    `..`, no hidden files, no backslashes) and the result must stay inside `root`.

    >>> root = Path("/srv/static")
    >>> static_file(root, "dist/../secret") is None, static_file(root, ".env") is None
    (True, True)
    """
    segments = path.split("/")
    if path == MANIFEST or not all(_SEGMENT.fullmatch(s) for s in segments):
        return None
    if Path(path).suffix not in _STATIC_TYPES:
        return None
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


async def static(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /static/{path}: a built front-end file, cached for a year (names carry hashes)."""
    found = static_file(STATIC_ROOT, match["path"])
    if found is None:
        raise AssetNotFound()
    headers = {"cache-control": STATIC_CACHE, "x-content-type-options": "nosniff"}
    return FileResponse(found, media_type=_STATIC_TYPES[found.suffix], headers=headers)


#: The site icon: a map pin on a street line, as SVG (browsers take it at /favicon.ico).
FAVICON_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="6" fill="#05cb63"/>'
    b'<path d="M4 24h24" stroke="#fff" stroke-width="3" stroke-linecap="round"/>'
    b'<path d="M16 4a7 7 0 0 0-7 7c0 5 7 12 7 12s7-7 7-12a7 7 0 0 0-7-7z" fill="#fff"/>'
    b'<circle cx="16" cy="11" r="2.6" fill="#05cb63"/></svg>'
)


async def favicon(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /favicon.ico: the site icon, no token (browsers ask for it on every page; it
    answered 401 before, a console error on every page)."""
    return Response(FAVICON_SVG, media_type="image/svg+xml", headers={
        "cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"})


def _origin(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, None for anything else.

    >>> _origin("https://tiles.example.net/style.json?key=1"), _origin("javascript:x")
    ('https://tiles.example.net', None)
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def page_origins(ctx: Context) -> list[str]:
    """The origins a map page fetches from besides its own: this server's base URL, the base
    map style, the geocoder, the blob store's direct URLs and `web.extra_origins`."""
    web = ctx.settings.web
    candidates = [ctx.settings.base_url, web.basemap_style_url, web.geocoder_url,
                  *web.extra_origins.split(",")]
    if getattr(ctx.blobs, "serve", "proxy") != "proxy":
        candidates.append(ctx.blobs.url_for(image_blob_key(1, "thumb_256", 0)) or "")
    return sorted({o for c in candidates if c and (o := _origin(c)) is not None})


def map_page_csp(ctx: Context, frame_ancestors: str, *, allow_eval: bool = True) -> str:
    """The Content-Security-Policy of a page drawing the map and the viewer: scripts from this
    server only, data from this server and the origins of `page_origins`. MapillaryJS compiles
    its image filters with `new Function` (FilterCreator), hence 'unsafe-eval'; inline scripts
    stay refused (the page's configuration is JSON, not script). Pages without the viewer
    pass `allow_eval=False`."""
    others = " ".join(page_origins(ctx))
    scripts = "'self' 'unsafe-eval'" if allow_eval else "'self'"
    return (f"default-src 'self'; script-src {scripts}; "
            "style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data: blob: {others}; connect-src 'self' {others}; "
            f"font-src 'self' {others}; worker-src 'self' blob:; child-src 'self' blob:; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; "
            f"frame-ancestors {frame_ancestors}").replace("  ", " ")


def _page_headers(frame_ancestors: str, csp: str | None = None) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp or f"frame-ancestors {frame_ancestors}",
        "Cache-Control": "no-cache",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "X-Content-Type-Options": "nosniff",
    }


def _message(status: int, title: str, text: str, frame_ancestors: str) -> Response:
    body = _templates.get_template("web/message.html").render(title=title, text=text)
    return HTMLResponse(body, status_code=status, headers=_page_headers(frame_ancestors))


async def _find_image(ctx: Context, key: str | None) -> Image | None:
    image_id = parse_id(key) if key else None
    if image_id is None:
        return None
    return (await ctx.store.get_images([image_id])).get(image_id)


def _config(ctx: Context, token: str, assets: Assets, image: Image | None,
            **extra: Any) -> dict[str, Any]:
    """What the page's script reads from <script id="wayview-config">."""
    config: dict[str, Any] = {"base": ctx.settings.base_url, "token": token,
                              "workerUrl": assets.worker, "spritesUrl": assets.sprites,
                              "basemap": {"land": assets.basemap_land,
                                          "borders": assets.basemap_borders},
                              "basemapStyleUrl": ctx.settings.web.basemap_style_url or None,
                              "geocoderUrl": ctx.settings.web.geocoder_url or None,
                              "spriteNamesUrl": assets.sprite_names,
                              "maxBboxArea": ctx.settings.search.max_bbox_area_deg2,
                              **extra}
    if image is not None:
        config["image"] = {"id": str(image.id), "lng": image.lon, "lat": image.lat}
    return config


def _captured(image: Image) -> str:
    return dt.datetime.fromtimestamp(image.captured_at_ms / 1000, dt.UTC).strftime("%Y-%m-%d")


async def embed(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /embed?image_key=<id>&style=photo|split|classic: the viewer page for iframes."""
    ancestors = ctx.settings.embed.frame_ancestors
    style = request.query_params.get("style") or DEFAULT_STYLE
    if style not in STYLES:
        return _message(400, "Unknown style",
                        f"style must be one of {', '.join(STYLES)}.", ancestors)
    image = await _find_image(ctx, request.query_params.get("image_key"))
    if image is None:
        return _message(404, "Image not found",
                        "This image does not exist or is no longer available.", ancestors)
    assets = _assets(STATIC_ROOT)
    if assets is None:
        return _message(503, "Viewer not built",
                        "The front-end was not built on this server (run `make install`).",
                        ancestors)
    try:
        token = await embed_token(ctx.store, ctx.authenticator, ctx.server_secret)
    except EmbedDisabled:
        return _message(503, "Embedding disabled", EmbedDisabled.message, ancestors)
    body = _templates.get_template("web/embed.html").render(
        style=style, assets=assets, image=image, captured=_captured(image),
        image_page=f"{ctx.settings.base_url}/app?pKey={image.id}&focus=photo",
        config=_config(ctx, token, assets, image, style=style))
    return HTMLResponse(body, headers=_page_headers(ancestors, map_page_csp(ctx, ancestors)))


async def explorer(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """GET /app[?pKey=<image id>]: the coverage explorer (full-screen map, viewer, download)."""
    assets = _assets(STATIC_ROOT)
    if assets is None:
        return _message(503, "Explorer not built",
                        "The front-end was not built on this server (run `make install`).",
                        "'self'")
    try:
        token = await embed_token(ctx.store, ctx.authenticator, ctx.server_secret)
    except EmbedDisabled:
        return _message(503, "Explorer disabled", EmbedDisabled.message, "'self'")
    image = await _find_image(ctx, request.query_params.get("pKey"))
    extra: dict[str, Any] = {}
    if image is None:  # start where the data are: the first image ever captured
        first = (await ctx.store.search_images(ImageSearch(limit=1))).items
        if first:
            extra["center"] = [first[0].lon, first[0].lat]
    body = _templates.get_template("web/app.html").render(
        assets=assets, config=_config(ctx, token, assets, image, **extra))
    return HTMLResponse(body, headers=_page_headers("'self'", map_page_csp(ctx, "'self'")))
