"""XYZ Web-Mercator tile math (wayview.tiles.tilemath), plus the doctests of tiles/ pure modules."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wayview.tiles import geometry, mvt, tilemath
from wayview.tiles.tilemath import (
    EXTENT,
    MAX_LATITUDE,
    MAX_ZOOM,
    is_valid_tile,
    lnglat_to_tile,
    project,
    tile_bounds,
    world_px,
)

zooms = st.integers(0, MAX_ZOOM)
lons = st.floats(-180.0, 180.0, allow_nan=False)
lats = st.floats(-MAX_LATITUDE, MAX_LATITUDE, allow_nan=False)


@st.composite
def tiles(draw: st.DrawFn) -> tuple[int, int, int]:
    z = draw(zooms)
    return z, draw(st.integers(0, 2**z - 1)), draw(st.integers(0, 2**z - 1))


@pytest.mark.parametrize("module", [tilemath, geometry, mvt], ids=lambda m: m.__name__)
def test_tiles_doctests(module):
    # pyproject's testpaths do not include src/wayview/tiles, so the doctests run from here.
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_tilemath_constants():
    assert (MAX_ZOOM, EXTENT) == (14, 4096)
    assert MAX_LATITUDE == pytest.approx(85.0511287798066, abs=1e-12)


@pytest.mark.parametrize(
    "z,x,y,valid",
    [
        (0, 0, 0, True),
        (14, 2**14 - 1, 2**14 - 1, True),
        (14, 2**14, 0, False),
        (15, 0, 0, False),
        (-1, 0, 0, False),
        (3, -1, 0, False),
        (3, 0, 8, False),
    ],
)
def test_is_valid_tile_range(z, x, y, valid):
    assert is_valid_tile(z, x, y) is valid


def test_tile_bounds_world_and_quadrants():
    assert tile_bounds(0, 0, 0) == pytest.approx((-180.0, -MAX_LATITUDE, 180.0, MAX_LATITUDE))
    west, south, east, north = tile_bounds(1, 0, 1)
    assert (west, east, north) == (-180.0, 0.0, 0.0)
    assert south == pytest.approx(-MAX_LATITUDE)


@given(tiles())
def test_tile_bounds_neighbours_share_edges(tile):
    z, x, y = tile
    west, south, east, north = tile_bounds(z, x, y)
    assert west < east and south < north
    if x + 1 < 2**z:
        assert tile_bounds(z, x + 1, y)[0] == east
    if y + 1 < 2**z:
        assert tile_bounds(z, x, y + 1)[3] == pytest.approx(south, abs=1e-12)


@given(tiles())
def test_lnglat_to_tile_round_trips_tile_centre(tile):
    z, x, y = tile
    west, south, east, north = tile_bounds(z, x, y)
    lon, lat = (west + east) / 2, (south + north) / 2
    assert lnglat_to_tile(lon, lat, z) == (x, y)
    px, py = project(lon, lat, z, x, y)
    assert 0 < int(px) < EXTENT and 0 < int(py) < EXTENT


@given(lons, lats, zooms)
def test_lnglat_to_tile_contains_point_and_project_stays_in_extent(lon, lat, z):
    x, y = lnglat_to_tile(lon, lat, z)
    assert is_valid_tile(z, x, y)
    west, south, east, north = tile_bounds(z, x, y)
    eps = 1e-9
    assert west - eps <= lon <= east + eps
    assert south - eps <= lat <= north + eps
    px, py = project(np.array([lon]), np.array([lat]), z, x, y)
    assert px.dtype == np.int32 and py.dtype == np.int32
    assert 0 <= px[0] <= EXTENT and 0 <= py[0] <= EXTENT


@given(lons, lats, zooms)
def test_world_px_agrees_with_tile_index(lon, lat, z):
    wx, wy = world_px(lon, lat, z)
    x, y = lnglat_to_tile(lon, lat, z)
    n = 2**z
    assert min(math.floor(float(wx) / EXTENT), n - 1) == x
    assert min(math.floor(float(wy) / EXTENT), n - 1) == y


@given(tiles(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_project_inverts_tile_bounds_interpolation(tile, fx, fy):
    z, x, y = tile
    west, south, east, north = tile_bounds(z, x, y)
    lon = west + fx * (east - west)
    # Mercator y is linear in tile pixels, so interpolate in world pixels and read back latitude.
    wy = (y + fy) * EXTENT
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * wy / (EXTENT * 2**z)))))
    px, py = project(lon, lat, z, x, y)
    assert abs(int(px) - fx * EXTENT) <= 1
    assert abs(int(py) - fy * EXTENT) <= 1


def test_project_points_outside_tile_fall_outside_extent():
    z, x, y = 10, 512, 340
    west, south, east, north = tile_bounds(z, x, y)
    lon = np.array([west - 0.01, east + 0.01, (west + east) / 2, (west + east) / 2])
    lat = np.array([(south + north) / 2, (south + north) / 2, north + 0.01, south - 0.01])
    px, py = project(lon, lat, z, x, y)
    assert px[0] < 0 and px[1] > EXTENT and py[2] < 0 and py[3] > EXTENT


def test_latitude_is_clamped_to_web_mercator_limit():
    assert lnglat_to_tile(10.0, 89.9, 5)[1] == 0
    assert lnglat_to_tile(10.0, -89.9, 5)[1] == 31
    wx, wy = world_px([0.0, 0.0], [90.0, -90.0], 3)
    assert wy.tolist() == [0.0, 8 * EXTENT]
    assert np.all(np.isfinite(wx))


def test_world_px_is_vectorised_and_scales_by_zoom():
    lon = np.linspace(-179.0, 179.0, 7)
    lat = np.linspace(-80.0, 80.0, 7)
    wx0, wy0 = world_px(lon, lat, 0)
    wx5, wy5 = world_px(lon, lat, 5)
    assert wx0.shape == (7,) and wx0.dtype == np.float64
    np.testing.assert_allclose(wx5, wx0 * 32)
    np.testing.assert_allclose(wy5, wy0 * 32)
    assert np.all(np.diff(wy0) < 0)  # y grows southwards
