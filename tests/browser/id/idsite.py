"""tests.browser.id.idsite: the iD editor's npm build, served offline against a live wayview.

iD (`@openstreetmap/id`) ships a ready-made `dist/` folder: `index.html`, `iD.min.js`, its CSS,
sprites, locales and data files, and a copy of MapillaryJS in `dist/mapillary-js/`. What it does
not ship it fetches from public hosts at run time (spec §10.4):

- the Mapillary service: module constants `https://graph.mapillary.com/` (graph, detections),
  `https://tiles.mapillary.com/maps/vtp` (vector tiles) and a literal
  `https://graph.mapillary.com/image_ids?sequence_id=` fallback; its viewer is MapillaryJS,
  loaded from `mapillary-js/mapillary.js` next to `index.html`, whose `GraphDataProvider` has the
  endpoint `"https://graph.mapillary.com"` hard-coded;
- the tagging schema, the community index, the Wikipedia site matrix and the name-suggestion
  index from `https://cdn.jsdelivr.net/npm/<package>@<version>/…` (without the schema the UI
  never renders);
- the OSM API (`https://api.openstreetmap.org`): its status and map data.

`IdSite` serves that `dist/` folder on loopback and rewrites those literals while serving (the
files in node_modules stay untouched): Mapillary to the wayview under test, the CDN to
`/npm/<package>@<version>/…` answered from this folder's node_modules, the OSM API to two small
stubs (an online status, empty map data). iD's Mapillary client token is left as it is; the
test registers it on the server (`wayview apps create --client-token`). MapillaryJS is served
from the `mapillary-js` package pinned beside iD (iD copies the same files into its dist).

The packages come from `package.json` / `package-lock.json` here: `ensure_installed()` runs
`npm ci` when node_modules is missing or was installed from another lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mimetypes
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
ID_PACKAGE = NODE_MODULES / "@openstreetmap" / "id"
ID_DIST = ID_PACKAGE / "dist"
MAPILLARY_PACKAGE = NODE_MODULES / "mapillary-js"
MAPILLARY_DIST = MAPILLARY_PACKAGE / "dist"
STAMP = NODE_MODULES / ".wayview-lock.sha256"
NPM_TIMEOUT_S = 600

#: iD's built-in Mapillary client token (modules/services/mapillary.js), registered on the server.
ID_CLIENT_TOKEN = "MLY|4100327730013843|5bb78b81720791946a9a7b956c57b7cf"

#: Packages iD fetches from the jsDelivr CDN, served from node_modules under /npm/.
CDN_PACKAGES = ("@openstreetmap/id-tagging-schema", "osm-community-index", "wmf-sitematrix",
                "name-suggestion-index")


def lock_digest() -> str:
    """The digest of package.json and package-lock.json (what node_modules was installed from)."""
    sha = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        sha.update((HERE / name).read_bytes())
    return sha.hexdigest()


def installed() -> bool:
    """node_modules exists and was installed by `npm ci` from the current lock file."""
    return STAMP.exists() and STAMP.read_text().strip() == lock_digest() and ID_DIST.is_dir()


def ensure_installed(npm: str, env: dict[str, str]) -> None:
    """`npm ci` in this folder unless node_modules is current. A lock on the folder itself
    (no lock file left behind) serialises parallel test workers."""
    folder = os.open(HERE, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        if installed():
            return
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=HERE, env=env, capture_output=True, text=True,
                              timeout=NPM_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise AssertionError(f"npm ci in {HERE} failed:\n{done.stdout[-3000:]}\n"
                                 f"{done.stderr[-3000:]}")
        STAMP.write_text(lock_digest() + "\n")
    finally:
        os.close(folder)  # releases the lock


def package_version(folder: Path) -> str:
    return str(json.loads((folder / "package.json").read_text())["version"])


def _replace(text: str, old: str, new: str, count: int, where: str) -> str:
    found = text.count(old)
    if found != count:
        raise AssertionError(f"{where}: expected {count} occurrence(s) of {old!r}, found {found} "
                             "(an iD or MapillaryJS upgrade moved it: update tests/browser/id)")
    return text.replace(old, new)


def rewrite_id(text: str, wayview: str, site: str) -> str:
    """iD.min.js pointed at wayview (Mapillary), the site's /npm/ (CDN) and /osm (OSM API)."""
    where = "@openstreetmap/id dist/iD.min.js"
    text = _replace(text, '"https://graph.mapillary.com/"', f'"{wayview}/"', 1, where)
    text = _replace(text, '"https://tiles.mapillary.com/maps/vtp"', f'"{wayview}/maps/vtp"', 1,
                    where)
    text = _replace(text, "https://graph.mapillary.com/image_ids?sequence_id=",
                    f"{wayview}/image_ids?sequence_id=", 1, where)
    text = _replace(text, '"https://cdn.jsdelivr.net/npm/', f'"{site}/npm/', 4, where)
    text = _replace(text, '"https://api.openstreetmap.org"', f'"{site}/osm"', 2, where)
    _replace(text, ID_CLIENT_TOKEN, ID_CLIENT_TOKEN, 1, where)  # the token the server knows
    for host in ("mapillary.com", "cdn.jsdelivr.net"):
        if host in text:
            raise AssertionError(f"{where}: {host} is still referenced after the rewrite")
    return text


def rewrite_mapillary(text: str, wayview: str) -> str:
    """MapillaryJS's hard-coded GraphDataProvider endpoint pointed at wayview."""
    return _replace(text, '"https://graph.mapillary.com"', f'"{wayview}"', 1,
                    "mapillary-js dist/mapillary.js")


#: GET /api/capabilities.json of the OSM API, the fields iD reads (online, no blocklist).
OSM_CAPABILITIES = {
    "version": "0.6", "generator": "wayview test stub",
    "api": {"version": {"minimum": "0.6", "maximum": "0.6"}, "area": {"maximum": 0.25},
            "waynodes": {"maximum": 2000}, "relationmembers": {"maximum": 32000},
            "changesets": {"maximum_elements": 10000}, "timeout": {"seconds": 300},
            "status": {"database": "online", "api": "online", "gpx": "online"}},
    "policy": {"imagery": {"blacklist": []}},
}
#: GET /api/0.6/map.json?bbox=…: an empty area.
OSM_EMPTY_MAP = {"version": "0.6", "generator": "wayview test stub", "elements": []}


@dataclass
class Served:
    """One request the site answered."""

    path: str
    status: int


@dataclass
class IdSite:
    """The running site: its base URL and the requests it answered."""

    base_url: str
    served: list[Served] = field(default_factory=list)

    def paths(self, prefix: str) -> list[str]:
        return [s.path for s in self.served if s.path.startswith(prefix)]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        try:
            status, ctype, body = self.server.answer(path)
        except Exception as exc:  # a broken rewrite must show up in the test, not hang it
            status, ctype, body = 500, "text/plain", repr(exc).encode()
        self.server.site.served.append(Served(self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, wayview: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.site = IdSite(f"http://127.0.0.1:{self.server_address[1]}")
        self.wayview = wayview
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _rewritten(self, key: str) -> bytes:
        with self._lock:
            if key not in self._cache:
                if key == "id":
                    text = rewrite_id((ID_DIST / "iD.min.js").read_text(), self.wayview,
                                      self.site.base_url)
                else:
                    text = rewrite_mapillary((MAPILLARY_DIST / "mapillary.js").read_text(),
                                             self.wayview)
                self._cache[key] = text.encode()
            return self._cache[key]

    def answer(self, path: str) -> tuple[int, str, bytes]:
        js = "text/javascript; charset=utf-8"
        if path in ("/", "/index.html"):
            return self._file(ID_DIST / "index.html")
        if path == "/iD.min.js":
            return 200, js, self._rewritten("id")
        if path == "/mapillary-js/mapillary.js":
            return 200, js, self._rewritten("mapillary")
        if path.startswith("/mapillary-js/"):
            return self._file(MAPILLARY_DIST, path.removeprefix("/mapillary-js/"))
        if path.startswith("/npm/"):
            return self._npm(path.removeprefix("/npm/"))
        if path.startswith("/osm/"):
            return self._osm(path.removeprefix("/osm"))
        return self._file(ID_DIST, path.lstrip("/"))

    def _npm(self, rest: str) -> tuple[int, str, bytes]:
        """/npm/<package>@<version>/<file>: any version of a pinned package (the lock file
        decides which one is installed)."""
        for package in CDN_PACKAGES:
            if rest.startswith(package + "@"):
                _, _, file = rest[len(package) + 1:].partition("/")
                return self._file(NODE_MODULES / package, file)
        return 404, "text/plain", b"not a CDN package iD uses"

    def _osm(self, path: str) -> tuple[int, str, bytes]:
        if path == "/api/capabilities.json":
            return 200, "application/json", json.dumps(OSM_CAPABILITIES).encode()
        if path == "/api/0.6/map.json":
            return 200, "application/json", json.dumps(OSM_EMPTY_MAP).encode()
        return 404, "text/plain", b"no OSM API stub for this path"

    @staticmethod
    def _file(root: Path, relative: str | None = None) -> tuple[int, str, bytes]:
        target = (root / relative).resolve() if relative is not None else root.resolve()
        base = root.resolve() if relative is not None else root.parent.resolve()
        if not target.is_relative_to(base) or not target.is_file():
            return 404, "text/plain", b"not found"
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/json", "image/svg+xml"):
            ctype += "; charset=utf-8"
        return 200, ctype, target.read_bytes()


@contextlib.contextmanager
def id_site(wayview: str) -> Iterator[IdSite]:
    """Serve iD for the wayview at `wayview` (its base URL, no trailing slash) on loopback."""
    server = _Server(wayview.rstrip("/"))
    thread = threading.Thread(target=server.serve_forever, name="id-site", daemon=True)
    thread.start()
    try:
        yield server.site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
