"""Tests of wayview.pipeline.pyramid: grid math against §3.12 and the rendered tiles."""

from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from wayview.errors import InvalidInput
from wayview.pipeline.pyramid import (
    TILE_SIZE,
    grid,
    level_size,
    levels,
    max_level,
    render_level,
    render_pyramid,
    stored_levels,
    tile_box,
)

sizes = st.integers(min_value=1, max_value=20_000)


def _spec_grid(width: int, height: int, z: int) -> tuple[int, int]:
    """§3.12 and MapillaryJS TileMath in exact rational arithmetic."""
    top = math.ceil(math.log2(max(width, height)))
    s = Fraction(2) ** (z - top)
    return math.ceil(width * s / 1024), math.ceil(height * s / 1024)


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _gradient(width: int, height: int) -> Image.Image:
    """A smooth RGB test image (JPEG-friendly) with distinct values everywhere."""
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack(
        [xs + 0 * ys, ys + 0 * xs, 127 + 100 * np.sin(xs / 40) * np.cos(ys / 30)], axis=-1
    )
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


def _jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(1, 1, 0), (2, 2, 1), (3, 1, 2), (1024, 1024, 10), (1025, 1, 11), (4000, 3000, 12),
     (4096, 10, 12), (4097, 10, 13), (20000, 20000, 15)],
)
def test_max_level_is_ceil_log2_of_the_longer_side(width: int, height: int, expected: int) -> None:
    assert max_level(width, height) == expected == math.ceil(math.log2(max(width, height)))


def test_levels_reach_at_least_11() -> None:
    assert levels(4000, 3000) == range(13)
    assert levels(100, 50) == range(12)
    assert levels(1, 1) == range(12)


@pytest.mark.parametrize("z", [-1, 13, 100])
def test_invalid_levels_are_rejected(z: int) -> None:
    with pytest.raises(ValueError, match="outside 0..12"):
        grid(4000, 3000, z)


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (-1, -1)])
def test_invalid_sizes_are_rejected(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        max_level(*size)


def test_stored_levels_are_the_levels_mapillaryjs_requests() -> None:
    assert stored_levels(4000, 3000) == [11, 12]
    assert stored_levels(2048, 2048) == [11]
    assert stored_levels(2049, 10) == [11, 12]
    assert stored_levels(640, 480) == [11]
    assert stored_levels(1, 1) == [11]


def test_tiny_image_level_11_has_subpixel_tiles_that_show_the_pixel() -> None:
    assert grid(1, 1, 11) == (2, 2)
    assert {tile_box(1, 1, 11, x, y) for x in range(2) for y in range(2)} == {(0, 0, 1, 1, 1, 1)}
    assert grid(1, 1, 10) == (1, 1) and tile_box(1, 1, 10, 0, 0) == (0, 0, 1, 1, 1, 1)


@settings(max_examples=300, deadline=None)
@given(width=sizes, height=sizes, data=st.data())
def test_tile_boxes_partition_the_image(width: int, height: int, data: st.DataObject) -> None:
    top = max_level(width, height)
    for z in levels(width, height):
        columns, rows = grid(width, height, z)
        assert (columns, rows) == _spec_grid(width, height, z)
        assert columns >= 1 and rows >= 1
        if top + 10 - z < 0:  # T < 1 source pixel: only a 1×1 image at level 11
            assert (width, height, z) == (1, 1, 11)
            continue
        tile = 2 ** (top + 10 - z)  # T
        level_width, level_height = level_size(width, height, z)
        scale = min(Fraction(2) ** (z - top), 1)
        assert (level_width, level_height) == (
            math.ceil(width * scale), math.ceil(height * scale)
        )
        # Rows and columns are independent: boxes are products of x- and y-intervals.
        xs = [tile_box(width, height, z, x, 0) for x in range(columns)]
        ys = [tile_box(width, height, z, 0, y) for y in range(rows)]
        for intervals, extent, level_extent, lo, hi, out in (
            (xs, width, level_width, 0, 2, 4),
            (ys, height, level_height, 1, 3, 5),
        ):
            # Contiguous, non-empty, starting at 0 and ending at the image edge: a partition.
            assert intervals[0][lo] == 0 and intervals[-1][hi] == extent
            for previous, following in zip(intervals, intervals[1:], strict=False):
                assert previous[hi] == following[lo]
            for number, box in enumerate(intervals):
                assert box[lo] == number * tile and box[hi] - box[lo] >= 1
                assert box[hi] == min((number + 1) * tile, extent)
                assert 1 <= box[out] <= TILE_SIZE
                # The output is the box scaled by min(s, 1), rounded up at the far edge only.
                assert box[out] == math.ceil((box[hi] - box[lo]) * scale)
            assert sum(box[out] for box in intervals) == level_extent
        # Spot-check that a random tile's box is the product of its column and row.
        x = data.draw(st.integers(0, columns - 1))
        y = data.draw(st.integers(0, rows - 1))
        left, _, right, _, out_width, _ = xs[x]
        _, upper, _, lower, _, out_height = ys[y]
        assert tile_box(width, height, z, x, y) == (
            left, upper, right, lower, out_width, out_height
        )
        for bad in ((columns, 0), (0, rows), (-1, 0)):
            with pytest.raises(ValueError, match="outside"):
                tile_box(width, height, z, *bad)


def test_stitched_max_level_tiles_reproduce_the_source() -> None:
    source = _gradient(2500, 1300)
    z = max_level(2500, 1300)
    assert z == 12 and grid(2500, 1300, z) == (3, 2)
    canvas = Image.new("RGB", source.size)
    seen = set()
    for x, y, data in render_level(source, z):
        tile = _open(data)
        left, top, right, bottom, out_width, out_height = tile_box(2500, 1300, z, x, y)
        assert tile.format == "JPEG" and tile.size == (out_width, out_height)
        assert (right - left, bottom - top) == tile.size  # unscaled at z = max
        canvas.paste(tile, (left, top))
        seen.add((x, y))
    assert seen == {(x, y) for x in range(3) for y in range(2)}
    original, stitched = np.asarray(source), np.asarray(canvas)
    assert _psnr(original, stitched) > 38
    for point in [(0, 0), (1023, 1023), (1024, 1024), (2499, 1299), (2048, 5), (1500, 1100)]:
        px, py = point
        assert np.abs(original[py, px].astype(int) - stitched[py, px].astype(int)).max() <= 12


def test_lower_level_tiles_are_the_scaled_image() -> None:
    source = _gradient(2500, 1300)
    tiles = {(x, y): _open(data) for x, y, data in render_level(source, 11)}
    assert {key: t.size for key, t in tiles.items()} == {(0, 0): (1024, 650), (1, 0): (226, 650)}
    canvas = Image.new("RGB", (1250, 650))
    for (x, _), tile in tiles.items():
        canvas.paste(tile, (x * 1024, 0))
    expected = np.asarray(source.reduce(2))
    assert _psnr(expected, np.asarray(canvas)) > 38


def test_level_above_max_crops_without_upscaling() -> None:
    source = _gradient(600, 400)
    tiles = {(x, y): _open(data).size for x, y, data in render_level(source, 11)}
    assert tiles == {(0, 0): (512, 400), (1, 0): (88, 400)}


def test_render_pyramid_matches_render_level() -> None:
    source = _gradient(2500, 1300)
    jpeg = _jpeg(source)
    tiles = list(render_pyramid(jpeg, [11, 12, 11]))
    assert [(z, x, y) for z, x, y, _ in tiles] == [
        (12, 0, 0), (12, 1, 0), (12, 2, 0), (12, 0, 1), (12, 1, 1), (12, 2, 1),
        (11, 0, 0), (11, 1, 0),
    ]
    decoded = _open(jpeg)
    for z in (11, 12):
        expected = {(x, y): np.asarray(_open(d)) for x, y, d in render_level(decoded, z)}
        for tz, x, y, data in tiles:
            if tz == z:
                got = np.asarray(_open(data))
                assert got.shape == expected[x, y].shape
                assert _psnr(expected[x, y], got) > 40


def test_render_pyramid_decodes_at_a_reduced_scale_for_low_levels() -> None:
    jpeg = _jpeg(_gradient(4000, 3000))
    tiles = list(render_pyramid(jpeg, [9, 10]))
    sizes = {(z, x, y): _open(data).size for z, x, y, data in tiles}
    assert sizes == {(10, 0, 0): (1000, 750), (9, 0, 0): (500, 375)}


def test_render_pyramid_keeps_greyscale_and_converts_cmyk() -> None:
    grey = _jpeg(_gradient(1500, 900).convert("L"))
    assert {_open(d).mode for *_, d in render_pyramid(grey, [11])} == {"L"}
    cmyk = _jpeg(_gradient(1500, 900).convert("CMYK"))
    tiles = list(render_pyramid(cmyk, [11]))
    assert len(tiles) == 2 and {_open(d).mode for *_, d in tiles} == {"RGB"}


def test_render_pyramid_keeps_the_icc_profile() -> None:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    jpeg = _jpeg(_gradient(1200, 800), icc_profile=profile)
    for *_, data in render_pyramid(jpeg, [11]):
        assert _open(data).info.get("icc_profile") == profile


def test_render_pyramid_rejects_bad_input() -> None:
    with pytest.raises(InvalidInput):
        list(render_pyramid(b"not a jpeg", [11]))
    jpeg = _jpeg(_gradient(1200, 800))
    with pytest.raises(InvalidInput):
        list(render_pyramid(jpeg[: len(jpeg) // 2], [11]))
    with pytest.raises(ValueError, match="outside"):
        list(render_pyramid(jpeg, [12]))
    assert list(render_pyramid(jpeg, [])) == []
