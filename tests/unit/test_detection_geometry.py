"""Detection geometry: base64 MVT with one `mpy-or` polygon, extent 4096 (spec §5)."""

from __future__ import annotations

import base64

import mapbox_vector_tile
from hypothesis import given
from hypothesis import strategies as st

from wayview.model.detection_geometry import encode_polygon

unit = st.floats(0, 1, allow_nan=False)


def decode(text: str) -> dict:
    return mapbox_vector_tile.decode(base64.b64decode(text), default_options={"y_coord_down": True})


def test_detection_geometry_layer_and_exterior_winding():
    # Given counter-clockwise on screen, the encoder rewrites it clockwise (positive area).
    tile = decode(encode_polygon([[(0.1, 0.1), (0.1, 0.5), (0.5, 0.5), (0.5, 0.1)]]))
    layer = tile["mpy-or"]
    assert layer["extent"] == 4096 and layer["version"] == 2
    (feature,) = layer["features"]
    assert feature["id"] == 1 and feature["geometry"]["type"] == "Polygon"
    ring = feature["geometry"]["coordinates"][0]
    area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False))
    assert area > 0


@given(st.lists(st.tuples(unit, unit), min_size=3, max_size=12))
def test_detection_geometry_coordinates_stay_in_extent(points):
    tile = decode(encode_polygon([points]))
    for feature in tile.get("mpy-or", {}).get("features", []):
        geometry = feature["geometry"]
        polys = (
            geometry["coordinates"]
            if geometry["type"] == "MultiPolygon"
            else [geometry["coordinates"]]
        )
        for poly in polys:
            for ring in poly:
                assert all(0 <= x <= 4096 and 0 <= y <= 4096 for x, y in ring)
