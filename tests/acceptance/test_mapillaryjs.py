"""Acceptance: MapillaryJS 4.1.2's own `GraphDataProvider` reads an uploaded, processed sequence
from a live wayview (spec §10.3, Node level; issue #5).

A user uploads a zip of four 2048×1536 photos over HTTP exactly as mapillary_tools does
(`/upload/{key}` then `/finish_upload`); the live server's job runner processes it. Then
`tests/acceptance/node/provider.mjs` — the real npm `mapillary-js` module, its XMLHttpRequest
calls served by a fetch shim — loads the image, its sequence, its S2 cell, its level-11 tile
grid, its mesh and its cluster, as the viewer does before it draws anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.acceptance.live import (
    LiveServer,
    NodePackage,
    create_uploader,
    live_server,
    node_package,
)
from tests.api.test_upload_ingest import LAT0, LON0, photo, zip_of

from wayview.pipeline.pyramid import grid

pytestmark = [pytest.mark.slow]

WIDTH, HEIGHT = 2048, 1536
PHOTOS = 4
PROCESS_TIMEOUT_S = 180.0


@dataclass
class World:
    server: LiveServer
    client_token: str
    images: list[dict[str, Any]]  # the graph's view, in capture order

    @property
    def endpoint(self) -> str:
        return self.server.base_url + "/"


def _graph(http: httpx.Client, token: str, path: str, **params: str) -> Any:
    r = http.get(path, params=params, headers={"Authorization": f"OAuth {token}"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("mjs")
    data = root / "data"
    client_token, token = create_uploader("mjs_uploader", data_dir=data, cwd=root)
    body = zip_of([(f"{k}.jpg", photo(k, width=WIDTH, height=HEIGHT)) for k in range(PHOTOS)])
    with live_server(data, root / "server.log", cwd=root) as server, \
            httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as http:
        auth = {"Authorization": f"OAuth {token}"}
        r = http.post("/upload/mly_tools_mjs.zip", content=body, headers={**auth, "Offset": "0"})
        assert r.status_code == 200, r.text
        r = http.post("/finish_upload", headers=auth,
                      json={"file_handle": r.json()["h"], "file_type": "zip"})
        assert r.status_code == 200, r.text
        fields = "id,sequence,captured_at,geometry"
        bbox = f"{LON0 - 0.001},{LAT0 - 0.001},{LON0 + 0.01},{LAT0 + 0.01}"
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while True:
            found = _graph(http, client_token, "/images", bbox=bbox, fields=fields)["data"]
            if len(found) == PHOTOS:
                break
            assert time.monotonic() < deadline, f"upload not processed:\n{server.log_tail()}"
            time.sleep(0.3)
        found.sort(key=lambda im: (im["captured_at"], im["id"]))
        yield World(server, client_token, found)


@pytest.fixture(scope="module")
def loaded(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    package: NodePackage = node_package(tmp_path_factory.mktemp("node"))
    first = world.images[0]
    lng, lat = first["geometry"]["coordinates"]
    out: dict[str, Any] = package.run("provider.mjs", {
        "endpoint": world.endpoint, "token": world.client_token, "imageId": first["id"],
        "sequenceId": first["sequence"], "lngLat": {"lng": lng, "lat": lat}, "z": 11})
    return out


def test_get_images_returns_the_uploaded_image(loaded: dict[str, Any], world: World) -> None:
    first = world.images[0]
    assert "error" not in loaded["images"], loaded["images"]
    [contract] = loaded["images"]
    node = contract["node"]
    assert contract["node_id"] == node["id"] == first["id"]
    assert abs(node["geometry"]["lng"] - LON0) < 1e-6 and abs(node["geometry"]["lat"] - LAT0) < 1e-6
    assert node["computed_geometry"] is not None
    assert node["sequence"] == {"id": first["sequence"]}
    assert node["captured_at"] == first["captured_at"] == 1_619_863_200_500
    assert node["creator"]["username"] == "mjs_uploader"
    assert node["camera_type"] == "perspective"
    assert (node["width"], node["height"]) == (WIDTH, HEIGHT)
    assert node["thumb"]["url"].startswith(world.server.base_url)
    assert len(node["computed_rotation"]) == 3 and len(node["camera_parameters"]) == 3
    assert isinstance(node["atomic_scale"], (int, float)) and node["merge_id"]
    for asset in ("mesh", "cluster"):
        assert node[asset]["url"].startswith(world.server.base_url), node[asset]
    spatial = loaded["spatial"]
    assert "error" not in spatial and spatial[0]["node_id"] == first["id"], spatial


def test_get_sequence_is_in_capture_order(loaded: dict[str, Any], world: World) -> None:
    assert loaded["sequence"] == {"id": world.images[0]["sequence"],
                                  "image_ids": [im["id"] for im in world.images]}


def test_get_core_images_of_the_s2_cell_contains_the_image(loaded: dict[str, Any],
                                                           world: World) -> None:
    core = loaded["core"]
    assert "error" not in core, core
    assert core["cell_id"] == loaded["cellId"]
    by_id = {im["id"]: im for im in core["images"]}
    first = world.images[0]
    assert first["id"] in by_id
    assert by_id[first["id"]]["sequence"] == {"id": first["sequence"]}


def test_get_image_tiles_is_a_full_grid(loaded: dict[str, Any], world: World) -> None:
    tiles = loaded["tiles"]
    assert "error" not in tiles, tiles
    assert tiles["node_id"] == world.images[0]["id"]
    columns, rows = grid(WIDTH, HEIGHT, 11)
    cells = sorted((t["x"], t["y"]) for t in tiles["node"])
    assert cells == [(x, y) for x in range(columns) for y in range(rows)]
    assert {t["z"] for t in tiles["node"]} == {11}
    with httpx.Client(timeout=30, trust_env=False) as http:
        for tile in tiles["node"]:
            r = http.get(tile["url"])  # tile URLs need no token (they are asset URLs)
            assert r.status_code == 200 and r.content[:2] == b"\xff\xd8", (tile, r.status_code)


def test_mesh_and_cluster_decode(loaded: dict[str, Any], world: World) -> None:
    mesh = loaded["mesh"]
    assert "error" not in mesh, mesh
    assert len(mesh["vertices"]) >= 12 and len(mesh["vertices"]) % 3 == 0
    assert len(mesh["faces"]) >= 6 and len(mesh["faces"]) % 3 == 0
    assert max(mesh["faces"]) < len(mesh["vertices"]) // 3
    cluster = loaded["cluster"]
    assert "error" not in cluster, cluster
    reference = cluster["reference"]
    assert abs(reference["lat"] - LAT0) < 0.01 and abs(reference["lng"] - LON0) < 0.01


def test_errors_reach_the_provider_as_graph_errors(loaded: dict[str, Any]) -> None:
    # Unknown ids give an empty list (as the hosted API); a bad level reaches the provider's
    # error formatter as `code (type, fbtrace_id): message`.
    assert loaded["missing"] == []
    message = loaded["badTiles"]["error"]
    assert message.startswith("100 (MLYApiException, ") and "parameter z" in message, message
