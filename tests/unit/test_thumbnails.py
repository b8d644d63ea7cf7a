"""Tests of wayview.pipeline.thumbnails: sizes, metadata stripping and robustness."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from tests.helpers_jpeg import make_jpeg

from wayview.errors import InvalidInput
from wayview.pipeline.thumbnails import (
    THUMBNAIL_QUALITY,
    make_derivatives,
    strip_metadata_segments,
)

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared").resolve()
SONY = SHARED / "data" / "mapillary_tools_samples" / "images" / "DSC00001.JPG"


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _sizes(derivatives: dict[str, bytes]) -> dict[str, tuple[int, int]]:
    return {k: _open(v).size for k, v in derivatives.items() if k != "original"}


def test_thumbnails_are_scaled_to_their_widths_keeping_aspect() -> None:
    derivatives = make_derivatives(make_jpeg(width=2400, height=1800))
    assert _sizes(derivatives) == {
        "thumb_2048": (2048, 1536),
        "thumb_1024": (1024, 768),
        "thumb_256": (256, 192),
    }


def test_thumbnails_odd_aspect_is_rounded() -> None:
    sizes = _sizes(make_derivatives(make_jpeg(width=3001, height=1999)))
    assert sizes["thumb_2048"] == (2048, round(1999 * 2048 / 3001))
    assert sizes["thumb_256"] == (256, round(1999 * 256 / 3001))


def test_thumbnails_are_never_upscaled() -> None:
    sizes = _sizes(make_derivatives(make_jpeg(width=800, height=600)))
    assert sizes == {"thumb_2048": (800, 600), "thumb_1024": (800, 600), "thumb_256": (256, 192)}


def test_thumbnails_of_a_tiny_image_keep_its_size() -> None:
    sizes = _sizes(make_derivatives(make_jpeg(width=16, height=8)))
    assert set(sizes.values()) == {(16, 8)}


def test_thumbnails_keep_the_stored_pixel_grid() -> None:
    # Orientation 6 (rotate 90° to display) is not applied: width stays the long side.
    sizes = _sizes(make_derivatives(make_jpeg(width=600, height=400, orientation=6)))
    assert sizes["thumb_256"] == (256, 171)


def test_thumbnails_carry_no_exif_or_xmp() -> None:
    source = make_jpeg(width=300, height=200, gpano=True, map_description={"MAPLatitude": 1.0})
    for variant, data in make_derivatives(source).items():
        if variant == "original":
            continue
        image = _open(data)
        assert not image.getexif(), variant
        assert "xmp" not in image.info
        assert b"Exif\x00\x00" not in data and b"GPano" not in data and b"MAPLatitude" not in data


def test_thumbnails_are_baseline_jpegs() -> None:
    for variant, data in make_derivatives(make_jpeg(width=300, height=200)).items():
        image = _open(data)
        assert image.format == "JPEG"
        if variant != "original":
            assert not image.info.get("progressive") and not image.info.get("progression")


def test_thumbnails_original_is_the_file_unchanged() -> None:
    source = make_jpeg(width=300, height=200)
    assert make_derivatives(source)["original"] is source


def test_thumbnails_show_the_same_picture() -> None:
    source = make_jpeg(width=1200, height=900, color=(200, 40, 90))
    pixel = _open(make_derivatives(source)["thumb_256"]).convert("RGB").getpixel((128, 96))
    assert isinstance(pixel, tuple)
    assert all(abs(a - b) <= 4 for a, b in zip(pixel, (200, 40, 90), strict=True))


def test_thumbnails_quality_constant_is_85() -> None:
    assert THUMBNAIL_QUALITY == 85


def test_thumbnails_grayscale_stays_grayscale() -> None:
    buffer = io.BytesIO()
    Image.new("L", (500, 300), 128).save(buffer, "JPEG")
    derivatives = make_derivatives(buffer.getvalue())
    assert _open(derivatives["thumb_256"]).mode == "L"


def test_thumbnails_cmyk_becomes_rgb() -> None:
    buffer = io.BytesIO()
    Image.new("CMYK", (500, 300), (0, 100, 200, 10)).save(buffer, "JPEG")
    derivatives = make_derivatives(buffer.getvalue())
    assert {_open(d).mode for k, d in derivatives.items() if k != "original"} == {"RGB"}


def test_thumbnails_keep_the_icc_profile() -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), (1, 2, 3)).save(buffer, "JPEG", icc_profile=profile)
    thumb = _open(make_derivatives(buffer.getvalue())["thumb_256"])
    assert thumb.info.get("icc_profile") == profile


def test_thumbnails_strip_metadata_keeps_a_decodable_jpeg() -> None:
    source = make_jpeg(width=64, height=48, gpano=True)
    stripped = strip_metadata_segments(source)
    assert len(stripped) < len(source)
    assert _open(stripped).size == (64, 48)
    assert strip_metadata_segments(stripped) == stripped


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff\xe0\x00\x10JFIF"])
def test_thumbnails_reject_non_jpeg_bytes(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        make_derivatives(data)


def test_thumbnails_reject_a_truncated_jpeg() -> None:
    source = make_jpeg(width=400, height=300, quality=95)
    with pytest.raises(InvalidInput, match="corrupt image data"):
        make_derivatives(source[: len(source) // 2])


def test_thumbnails_reject_png() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    with pytest.raises(InvalidInput, match="not a JPEG"):
        make_derivatives(buffer.getvalue())


_SMALL = make_jpeg(width=96, height=64, gpano=True)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SMALL) - 1), st.integers(0, 255)), max_size=6))
def test_thumbnails_corrupted_input_raises_only_invalid_input(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_SMALL)
    for offset, value in edits:
        data[offset] = value
    try:
        derivatives = make_derivatives(bytes(data))
    except InvalidInput:
        return
    assert set(derivatives) == {"thumb_256", "thumb_1024", "thumb_2048", "original"}


def test_thumbnails_of_a_real_mpo_camera_file() -> None:
    if not SONY.exists():
        pytest.skip(f"shared sample data not available: {SONY}")
    sizes = _sizes(make_derivatives(SONY.read_bytes()))
    assert sizes == {"thumb_2048": (2048, 1152), "thumb_1024": (1024, 576), "thumb_256": (256, 144)}
