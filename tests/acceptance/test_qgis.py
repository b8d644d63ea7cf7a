"""Acceptance: QGIS reads wayview's vector tiles and the explorer's GeoJSON download (issue #20).

QGIS is Debian's (`qgis`, `python3-qgis`: 3.22 on bookworm). PyQGIS only runs on the system
Python it was built for, so QGIS_SCRIPT below runs as a subprocess of `/usr/bin/python3` with
`QT_QPA_PLATFORM=offscreen`, the server's address and token in its JSON argument; it prints one
JSON object. QGIS is used unmodified, the way a user sets it up:

- each tileset (`mly1_public`, `mly_map_feature_point`, `mly_map_feature_traffic_sign`) is an
  XYZ vector tile layer (`QgsVectorTileLayer`, source `type=xyz&url=…/{z}/{x}/{y}?access_token=
  …&zmin=0&zmax=14`), with the client token in the URL. `mly1_public` is opened twice: with the
  source string QGIS's own connection dialog stores (`QgsDataSourceUri.encodedUri()`, which
  percent-encodes the URL: `%7Bz%7D`, `MLY%7C…`) and with the string as a user types it into
  the Python console (raw `{z}`, raw `|` in the token);
- features are read as QGIS decodes them for drawing: the layer's renderer is a
  `QgsVectorTileBasicRenderer` subclass that records the decoded features of every tile it is
  handed (`QgsVectorTileRendererData.layerFeatures`; PyQGIS 3.22 has no other way to reach
  QGIS's MVT decoder), at map scales where QGIS picks tile zoom 14, 6 and 5;
- a PNG of `mly1_public` is rendered with the layer's default style
  (`QgsMapRendererParallelJob`) and must show the images where they are;
- the GeoJSON files the `/app` explorer's "Download" button saves (driven in Chromium through
  the browser harness, as a user clicks it) are opened as `QgsVectorLayer(path, …, "ogr")`.

Spec §4 (tiles: layers per zoom, property names and types). The rendered PNGs go to
`artifacts/qgis/`. Without QGIS (or Chromium) the tests skip with the reason; with `CI` set they
fail (scripts/test-requirements installs `qgis` and `python3-qgis`).
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.live import REPO, clean_env
from tests.browser.harness import (
    LAT0,
    LON0,
    PHOTOS,
    POINT_VALUE,
    SIGN_VALUE,
    START,
    STEP_DEG,
    WAIT_MS,
    World,
    launch_chromium,
    need,
    offline_context,
    seed_world,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("qgis")]

SYSTEM_PYTHON = Path("/usr/bin/python3")
QGIS_TIMEOUT_S = 300
ARTIFACTS = REPO / "artifacts" / "qgis"
TILESETS = ("mly1_public", "mly_map_feature_point", "mly_map_feature_traffic_sign")
#: The zoom levels read (QGIS picks the tile zoom from the map scale).
READ_ZOOMS = (14, 6, 5)
#: Positions decoded from a z14 tile (extent 4096) match the graph's to about 5e-6°; a z6 tile's
#: to about 1.4e-3°.
TOLERANCE_DEG = {14: 2e-5, 6: 3e-3, 5: 6e-3}
#: Spec §4.3: the properties each layer carries on every feature, and their types as PyQGIS
#: hands them over after QGIS decoded the tile.
ALWAYS: dict[str, dict[str, str]] = {
    "overview": {"id": "int", "captured_at": "int", "sequence_id": "str", "is_pano": "bool"},
    "sequence": {"id": "str", "image_id": "int", "captured_at": "int", "is_pano": "bool"},
    "image": {"id": "int", "captured_at": "int", "compass_angle": "int", "sequence_id": "str",
              "is_pano": "bool"},
    "point": {"id": "int", "value": "str", "first_seen_at": "int", "last_seen_at": "int"},
    "traffic_sign": {"id": "int", "value": "str", "first_seen_at": "int", "last_seen_at": "int"},
}
#: Properties present when known (`creator_id`) or when owned (`organization_id`).
OPTIONAL: dict[str, dict[str, str]] = {
    "overview": {}, "point": {}, "traffic_sign": {},
    "sequence": {"creator_id": "int", "organization_id": "int"},
    "image": {"creator_id": "int", "organization_id": "int"},
}

# Runs on /usr/bin/python3 (PyQGIS); prints one JSON object on stdout.
QGIS_SCRIPT = r'''
import json, math, sys

from qgis.core import (
    Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,
    QgsDataSourceUri, QgsMapRendererParallelJob, QgsMapSettings, QgsPointXY, QgsProject,
    QgsRectangle, QgsVectorLayer, QgsVectorTileBasicRenderer, QgsVectorTileBasicRendererStyle,
    QgsVectorTileLayer, QgsWkbTypes,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

cfg = json.loads(sys.argv[1])
app = QgsApplication([], False)
app.initQgis()
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
MERCATOR = QgsCoordinateReferenceSystem("EPSG:3857")
TO_MERCATOR = QgsCoordinateTransform(WGS84, MERCATOR, QgsProject.instance())
TO_WGS84 = QgsCoordinateTransform(MERCATOR, WGS84, QgsProject.instance())
SCALE_Z0 = 559082264.0287178  # QGIS's map scale of tile zoom 0
SIZE = 512
KEEP = []  # renderer clones handed to QGIS
GEOMETRY = {"overview": 0, "image": 0, "point": 0, "traffic_sign": 0, "sequence": 1}


def value(v):
    """An attribute as JSON: [python type name, value]."""
    if v is None or type(v).__name__ == "QVariant":
        return ["null", None]
    return [type(v).__name__, v if isinstance(v, (bool, int, float, str)) else str(v)]


def source(tileset, encoded):
    url = (f"{cfg['base']}/maps/vtp/{tileset}/2/{{z}}/{{x}}/{{y}}"
           f"?access_token={cfg['token']}")
    if not encoded:  # as typed by a user: raw braces, raw | in the token
        return f"type=xyz&url={url}&zmin=0&zmax=14"
    uri = QgsDataSourceUri()
    uri.setParam("type", "xyz")
    uri.setParam("url", url)
    uri.setParam("zmin", "0")
    uri.setParam("zmax", "14")
    return bytes(uri.encodedUri()).decode()


class Recorder(QgsVectorTileBasicRenderer):
    """The default renderer, plus a record of every feature QGIS decoded from each tile."""

    def __init__(self, record):
        super().__init__()
        self.record = record
        styles = []
        for layer, geometry in GEOMETRY.items():
            style = QgsVectorTileBasicRendererStyle(layer, layer, geometry)
            # Naming the properties makes QGIS decode them (it decodes only the attributes the
            # styles use); array(...) is never NULL, so every feature passes the filter.
            names = ", ".join(f'"{n}"' for n in cfg["properties"][layer])
            style.setFilterExpression(f"array({names}) IS NOT NULL")
            styles.append(style)
        self.setStyles(styles)

    def clone(self):
        copy = Recorder(self.record)
        KEEP.append(copy)  # QGIS owns the clone; keep the Python side alive
        return copy

    def renderTile(self, tile, context):
        tid = tile.id()
        for layer in tile.layers():
            for f in tile.layerFeatures(layer):
                geometry = f.geometry()
                geometry.transform(TO_WGS84)
                points = [[p.x(), p.y()] for p in geometry.vertices()]
                self.record.append({
                    "tile": [tid.zoomLevel(), tid.column(), tid.row()], "layer": layer,
                    "geometry": QgsWkbTypes.displayString(geometry.wkbType()),
                    "points": points,
                    "properties": {field.name(): value(f.attribute(field.name()))
                                   for field in f.fields()},
                })
        super().renderTile(tile, context)



def map_settings(layer, lon, lat, width_m):
    c = TO_MERCATOR.transform(QgsPointXY(lon, lat))
    ms = QgsMapSettings()
    ms.setLayers([layer])
    ms.setDestinationCrs(MERCATOR)
    ms.setOutputSize(QSize(SIZE, SIZE))
    ms.setBackgroundColor(QColor(255, 255, 255))
    ms.setExtent(QgsRectangle(c.x() - width_m / 2, c.y() - width_m / 2,
                              c.x() + width_m / 2, c.y() + width_m / 2))
    return ms


def render(ms):
    job = QgsMapRendererParallelJob(ms)
    job.start()
    job.waitForFinished()
    return job.renderedImage(), [e.message for e in job.errors()]


def width_for_zoom(z):
    """The extent width (m) at which QGIS 3.22 draws tiles of zoom z: it picks
    round(log2(SCALE_Z0 / scale) - 1) (qgsvectortileutils.cpp), so aim at the middle."""
    scale = SCALE_Z0 / 2 ** (z + 1)
    return scale * SIZE * 0.0254 / 96  # 96 dpi, the default output resolution


def read_tiles(out):
    lon, lat = cfg["center"]
    for name, tileset, encoded in cfg["layers"]:
        layer = QgsVectorTileLayer(source(tileset, encoded), name)
        entry = {"valid": layer.isValid(), "crs": layer.crs().authid(),
                 "source": layer.source(), "reads": {}}
        out[name] = entry
        if not layer.isValid():
            continue
        if tileset == "mly1_public" and encoded:
            entry["png"] = picture(layer, lon, lat)
        record = []
        layer.setRenderer(Recorder(record))
        for z in cfg["zooms"]:
            record.clear()
            _, errors = render(map_settings(layer, lon, lat, width_for_zoom(z)))
            entry["reads"][str(z)] = {"features": list(record), "errors": errors}


def picture(layer, lon, lat):
    """The picture a user sees: the layer's default style, zoomed in on the images."""
    ms = map_settings(layer, lon, lat, 400)
    image, errors = render(ms)
    image.save(cfg["png"])
    background = QColor(255, 255, 255).rgb()
    drawn = sum(1 for x in range(image.width()) for y in range(image.height())
                if image.pixel(x, y) != background)
    to_pixel = ms.mapToPixel()
    at_images = []
    for ilon, ilat in cfg["positions"]:
        p = to_pixel.transform(TO_MERCATOR.transform(QgsPointXY(ilon, ilat)))
        x, y = round(p.x()), round(p.y())
        at_images.append(any(image.pixel(x + dx, y + dy) != background
                             for dx in (-1, 0, 1) for dy in (-1, 0, 1)))
    return {"path": cfg["png"], "drawn_pixels": drawn, "pixels": image.width() * image.height(),
            "at_images": at_images, "errors": errors}


def read_geojson(out):
    for name, path in cfg["geojson"].items():
        layer = QgsVectorLayer(path, name, "ogr")
        features = []
        if layer.isValid():
            for f in layer.getFeatures():
                point = f.geometry().asPoint()
                features.append({"point": [point.x(), point.y()],
                                 "attributes": {field.name(): value(f.attribute(field.name()))
                                                for field in f.fields()}})
        out[name] = {
            "valid": layer.isValid(), "count": layer.featureCount(),
            "geometry": QgsWkbTypes.displayString(layer.wkbType()),
            "crs": layer.crs().authid(),
            "fields": {field.name(): field.typeName() for field in layer.fields()},
            "features": features,
        }


# Layers live only inside these functions: PyQGIS crashes at exitQgis() while one is alive.
out = {"qgis": Qgis.QGIS_VERSION, "layers": {}, "geojson": {}}
read_tiles(out["layers"])
read_geojson(out["geojson"])
app.exitQgis()
sys.stdout.write(json.dumps(out))
'''


# -- fixtures ---------------------------------------------------------------------------------


def _has_pyqgis() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    done = subprocess.run([str(SYSTEM_PYTHON), "-c", "import qgis.core"], capture_output=True,
                          timeout=120, check=False, env=clean_env(QT_QPA_PLATFORM="offscreen"))
    return done.returncode == 0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    need(_has_pyqgis(), "PyQGIS not found for /usr/bin/python3 (Debian packages `qgis`, "
                        "`python3-qgis`)")
    yield from seed_world(tmp_path_factory.mktemp("qgis"))


@pytest.fixture(scope="module")
def downloads(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two GeoJSON files `/app`'s "Download" saves (points, traffic signs), as a user gets
    them: the explorer opened in Chromium over the seeded street, the button clicked."""
    folder = tmp_path_factory.mktemp("app-downloads")
    saved: dict[str, Path] = {}
    with contextlib.contextmanager(launch_chromium)() as browser:
        context, offline = offline_context(browser, viewport={"width": 1200, "height": 800},
                                           accept_downloads=True)
        page = context.new_page()
        page.goto(f"{world.base}/app")
        page.wait_for_function("() => window.wayview && window.wayview.mapLoaded",
                               timeout=WAIT_MS)
        lon = (world.positions[0][0] + world.positions[-1][0]) / 2
        page.evaluate("([lon, lat]) => window.wayview.map.jumpTo({center: [lon, lat], "
                      "zoom: 17.5})", [lon, world.positions[0][1]])
        page.wait_for_function("""() => {
            const map = window.wayview.map;
            return map.loaded() && ['points', 'signs'].every(
                layer => map.queryRenderedFeatures({layers: [layer]}).length > 0);
        }""", timeout=WAIT_MS)
        for kind in ("points", "signs"):
            page.select_option("#download-kind", kind)
            with page.expect_download(timeout=WAIT_MS) as info:
                page.click("#download")
            download = info.value
            assert download.suggested_filename.endswith(".geojson")
            saved[kind] = folder / download.suggested_filename
            download.save_as(str(saved[kind]))
        assert not offline.blocked, offline.blocked
        context.close()
    return saved


@pytest.fixture(scope="module")
def qgis(world: World, downloads: dict[str, Path],
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run QGIS_SCRIPT once against the live server; what QGIS read, as JSON."""
    folder = tmp_path_factory.mktemp("qgis-run")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    script = folder / "run_qgis.py"
    script.write_text(QGIS_SCRIPT)
    layers = [[tileset, tileset, True] for tileset in TILESETS]
    layers.append(["mly1_public as typed", "mly1_public", False])
    center = ((world.positions[0][0] + world.positions[-1][0]) / 2, world.positions[0][1])
    cfg = {"base": world.base, "token": world.client_token, "layers": layers,
           "center": center, "positions": world.positions, "zooms": list(READ_ZOOMS),
           "properties": {layer: sorted({*ALWAYS[layer], *OPTIONAL[layer]})
                          for layer in ALWAYS},
           "png": str(ARTIFACTS / "mly1_public-z14.png"),
           "geojson": {kind: str(path) for kind, path in downloads.items()}}
    done = subprocess.run([str(SYSTEM_PYTHON), str(script), json.dumps(cfg)], cwd=folder,
                          env=clean_env(QT_QPA_PLATFORM="offscreen",
                                        XDG_RUNTIME_DIR=str(folder), HOME=str(folder),
                                        PYTHONDONTWRITEBYTECODE="1"),
                          capture_output=True, text=True, timeout=QGIS_TIMEOUT_S,
                          stdin=subprocess.DEVNULL, check=False)
    (folder / "qgis.log").write_text(done.stderr)
    assert done.returncode == 0, (f"QGIS script failed:\n{done.stderr[-6000:]}\n"
                                  f"--- server log ---\n{world.server.log_tail()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _read(qgis: dict[str, Any], name: str, zoom: int) -> dict[str, list[dict[str, Any]]]:
    """Features QGIS decoded for layer NAME at ZOOM, by tile layer; no render errors."""
    entry = qgis["layers"][name]
    assert entry["valid"], entry
    assert entry["crs"] == "EPSG:3857", entry
    read = entry["reads"][str(zoom)]
    assert read["errors"] == [], read["errors"]
    by_layer: dict[str, list[dict[str, Any]]] = {}
    for feature in read["features"]:
        assert feature["tile"][0] == zoom, feature["tile"]
        by_layer.setdefault(feature["layer"], []).append(feature)
    return by_layer


def _check_properties(feature: dict[str, Any]) -> dict[str, Any]:
    """Spec §4.3 on one decoded feature: the always-present properties with their types,
    optional ones typed when present; its values as a plain dict."""
    layer, props = feature["layer"], feature["properties"]
    for name, kind in ALWAYS[layer].items():
        assert props.get(name, ["absent"])[0] == kind, (layer, name, props)
    for name, kind in OPTIONAL[layer].items():
        assert props.get(name, ["null"])[0] in (kind, "null"), (layer, name, props)
    return {name: v for name, (_, v) in props.items()}


def _near(point: list[float], lon: float, lat: float, zoom: int) -> bool:
    return math.dist(point, (lon, lat)) < TOLERANCE_DEG[zoom]


def _same_int(read: int, truth: int) -> bool:
    """QGIS read TRUTH: exactly, or wrapped to a signed 32-bit integer as QGIS 3.22 (and every
    release before https://github.com/qgis/QGIS/pull/62438, mid-2025) does with each integer
    tile property (https://github.com/qgis/QGIS/issues/62408). The tiles carry the exact
    uint64 values, as the hosted tiles do; newer QGIS reads them exactly."""
    wrapped = (truth + 2**31) % 2**32 - 2**31
    return read in (truth, wrapped)


def _captured_at_ms(k: int) -> int:
    """The capture time of the world's k-th photo (the harness takes one every 2 s)."""
    return int(START.timestamp() * 1000) + 2000 * k


def _image_index(world: World, read_id: int) -> int:
    matches = [k for k, image_id in enumerate(world.image_ids)
               if _same_int(read_id, int(image_id))]
    assert len(matches) == 1, (read_id, world.image_ids)
    return matches[0]


# -- vector tiles -----------------------------------------------------------------------------


def test_qgis_is_the_debian_release(qgis: dict[str, Any]) -> None:
    assert qgis["qgis"].startswith("3."), qgis["qgis"]


@pytest.mark.parametrize("name", ["mly1_public", "mly1_public as typed"])
def test_z14_has_every_image_and_the_sequence(qgis: dict[str, Any], world: World,
                                              name: str) -> None:
    layers = _read(qgis, name, 14)
    assert set(layers) == {"image", "sequence"}, set(layers)
    seen = []
    for feature in layers["image"]:
        assert feature["geometry"] == "Point"
        props = _check_properties(feature)
        k = _image_index(world, props["id"])
        seen.append(k)
        assert _near(feature["points"][0], *world.positions[k], 14), (feature, k)
        assert _same_int(props["captured_at"], _captured_at_ms(k)), props
        assert props["sequence_id"] == world.sequence_id
        assert props["is_pano"] is False
        assert props["compass_angle"] == 90
    assert sorted(seen) == list(range(PHOTOS))
    (line,) = layers["sequence"]
    assert line["geometry"] in ("LineString", "MultiLineString")
    props = _check_properties(line)
    assert props["id"] == world.sequence_id
    assert _image_index(world, props["image_id"]) == 0
    assert _same_int(props["captured_at"], _captured_at_ms(0)), props
    assert _near(line["points"][0], *world.positions[0], 14)
    assert _near(line["points"][-1], *world.positions[-1], 14)


def test_z6_has_the_sequence_line_only(qgis: dict[str, Any], world: World) -> None:
    layers = _read(qgis, "mly1_public", 6)
    assert set(layers) == {"sequence"}, set(layers)
    (line,) = layers["sequence"]
    props = _check_properties(line)
    assert props["id"] == world.sequence_id
    assert _image_index(world, props["image_id"]) == 0
    assert _near(line["points"][0], *world.positions[0], 6)


def test_z5_has_the_overview_points(qgis: dict[str, Any], world: World) -> None:
    layers = _read(qgis, "mly1_public", 5)
    assert set(layers) == {"overview"}, set(layers)
    assert layers["overview"], layers
    for feature in layers["overview"]:
        props = _check_properties(feature)
        k = _image_index(world, props["id"])
        assert props["sequence_id"] == world.sequence_id
        assert _same_int(props["captured_at"], _captured_at_ms(k)), props
        assert _near(feature["points"][0], *world.positions[k], 5)


@pytest.mark.parametrize(("tileset", "layer", "value", "which", "seen"), [
    ("mly_map_feature_traffic_sign", "traffic_sign", SIGN_VALUE, "sign_id", (1, 2)),
    ("mly_map_feature_point", "point", POINT_VALUE, "point_id", (3, 3)),
])
def test_map_feature_tilesets(qgis: dict[str, Any], world: World, tileset: str, layer: str,
                              value: str, which: str, seen: tuple[int, int]) -> None:
    layers = _read(qgis, tileset, 14)
    assert set(layers) == {layer}, set(layers)
    (feature,) = layers[layer]
    assert feature["geometry"] == "Point"
    props = _check_properties(feature)
    assert _same_int(props["id"], int(getattr(world, which))), props
    assert props["value"] == value
    # The harness seeds each feature seen from the capture times of photos SEEN.
    assert _same_int(props["first_seen_at"], _captured_at_ms(seen[0])), props
    assert _same_int(props["last_seen_at"], _captured_at_ms(seen[1])), props
    # Below z14 the map-feature tilesets are empty tiles (§4.2): QGIS reads them without error.
    for zoom in (6, 5):
        assert _read(qgis, tileset, zoom) == {}


def test_png_shows_the_images(qgis: dict[str, Any]) -> None:
    png = qgis["layers"]["mly1_public"]["png"]
    assert png["errors"] == [], png["errors"]
    assert Path(png["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Drawn, but not everywhere: markers and a line on a white map.
    assert 200 < png["drawn_pixels"] < png["pixels"] // 4, png
    assert png["at_images"] == [True] * PHOTOS, png


# -- GeoJSON from /app's download -------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value", "which", "position"), [
    ("signs", SIGN_VALUE, "sign_id", (LON0 + 1.5 * STEP_DEG, LAT0 + 0.00004)),
    ("points", POINT_VALUE, "point_id", (LON0 + 3.5 * STEP_DEG, LAT0 - 0.00004)),
])
def test_app_download_opens_in_qgis(qgis: dict[str, Any], world: World, kind: str, value: str,
                                    which: str, position: tuple[float, float]) -> None:
    layer = qgis["geojson"][kind]
    assert layer["valid"], layer
    assert layer["count"] == 1, layer
    assert layer["geometry"] == "Point", layer
    assert layer["crs"] == "EPSG:4326", layer
    assert {"id", "value", "first_seen_at", "last_seen_at"} <= set(layer["fields"]), layer
    (feature,) = layer["features"]
    attributes = feature["attributes"]
    assert attributes["id"] == ["str", getattr(world, which)], attributes
    assert attributes["value"] == ["str", value], attributes
    for name in ("first_seen_at", "last_seen_at"):
        assert attributes[name][0] == "int", attributes
    # Where the harness put it (the explorer takes positions from the z14 tiles: ~1 m).
    assert math.dist(feature["point"], position) < 2e-5, (feature["point"], position)
