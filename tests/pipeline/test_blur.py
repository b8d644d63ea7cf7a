"""Tests of wayview.pipeline.blur: region blurring, cascade detection, blurrer choice, JPEG path."""

from __future__ import annotations

import io
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms
from tests.conftest import shared_path

from wayview.errors import InvalidInput
from wayview.pipeline.blur import (
    BLUR_JPEG_QUALITY,
    MARGIN,
    Blurrer,
    CascadeBlurrer,
    NoBlurrer,
    Region,
    blur_jpeg,
    blur_regions,
    grown_box,
    open_blurrer,
)

# --- helpers -------------------------------------------------------------------------------


class FixedBlurrer:
    """A test double of the Blurrer protocol: always "detects" the same regions."""

    name = "fixed"

    def __init__(self, *regions: Region) -> None:
        self.regions = list(regions)
        self.seen_sizes: list[tuple[int, int]] = []

    def detect(self, image: Image.Image) -> list[Region]:
        self.seen_sizes.append(image.size)
        return list(self.regions)


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Uniform RGB noise: any smoothing changes almost every pixel by a lot."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def plain_scene(width: int, height: int, seed: int) -> np.ndarray:
    """Colour gradients plus sensor-like noise: nothing face- or plate-like."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xx / width * 200 + 20, yy / height * 180 + 40, (xx + yy) / (width + height) * 160 + 50],
        axis=-1,
    )
    base += rng.normal(0, 12, base.shape)
    return base.clip(0, 255).astype(np.uint8)


def draw_face(rgb: np.ndarray, center: tuple[int, int], size: int) -> None:
    """Draw a smoothed schematic frontal face in place; the skin oval is 0.75 x `size` wide.

    Dark hair and brows above bright eye whites with dark irises, a nose shadow and a dark
    mouth on a skin-toned oval: the light/dark layout the Haar face features respond to.
    """
    cx, cy = center
    s = size / 200

    def p(x: float, y: float) -> tuple[int, int]:
        return round(cx + x * s), round(cy + y * s)

    def a(w: float, h: float) -> tuple[int, int]:
        return max(1, round(w * s)), max(1, round(h * s))

    layer = rgb.copy()
    cv2.ellipse(layer, p(0, -20), a(85, 110), 0, 180, 360, (25, 30, 40), -1)  # hair
    cv2.ellipse(layer, p(0, 0), a(75, 100), 0, 0, 360, (200, 170, 150), -1)  # skin
    for side in (-1, 1):
        cv2.ellipse(layer, p(side * 32, -38), a(22, 6), 0, 0, 360, (35, 40, 50), -1)  # brow
        cv2.ellipse(layer, p(side * 32, -20), a(18, 9), 0, 0, 360, (250, 250, 250), -1)  # eye
        cv2.circle(layer, p(side * 32, -20), max(1, round(8 * s)), (20, 25, 30), -1)  # iris
    cv2.ellipse(layer, p(0, 18), a(14, 8), 0, 0, 360, (140, 119, 105), -1)  # nose shadow
    cv2.ellipse(layer, p(0, 50), a(28, 9), 0, 0, 360, (140, 60, 60), -1)  # mouth
    layer = cv2.GaussianBlur(layer, (0, 0), 2.0 * s)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.ellipse(mask, p(0, -5), a(90, 115), 0, 0, 360, 255, -1)
    rgb[mask > 0] = layer[mask > 0]


def face_scene(
    width: int, height: int, center: tuple[int, int], size: int, seed: int = 0
) -> Image.Image:
    rgb = plain_scene(width, height, seed)
    draw_face(rgb, center, size)
    return Image.fromarray(rgb)


def covers(region: Region, point: tuple[int, int]) -> bool:
    x, y = point
    return region.x <= x < region.x + region.w and region.y <= y < region.y + region.h


def to_jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def changed_box(before: Image.Image, after: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels that differ, or None when none do."""
    diff = np.any(np.asarray(before) != np.asarray(after), axis=-1)
    ys, xs = np.nonzero(diff)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def mean_abs_diff(before: Image.Image, after: Image.Image, box: tuple[int, int, int, int]) -> float:
    a = np.asarray(before.crop(box), dtype=np.int16)
    b = np.asarray(after.crop(box), dtype=np.int16)
    return float(np.abs(a - b).mean())


@pytest.fixture(scope="module")
def cascade() -> CascadeBlurrer:
    return CascadeBlurrer()


# --- blur_regions ----------------------------------------------------------------------------


def test_grown_box_adds_the_margin_on_every_side() -> None:
    assert MARGIN == pytest.approx(0.15)
    assert grown_box(Region(100, 50, 40, 20, "face"), 400, 300) == (94, 47, 146, 73)


def test_grown_box_clamps_to_the_image_and_drops_regions_outside_it() -> None:
    assert grown_box(Region(0, 0, 40, 40, "face"), 100, 80) == (0, 0, 46, 46)
    assert grown_box(Region(80, 70, 40, 40, "plate"), 100, 80) == (74, 64, 100, 80)
    assert grown_box(Region(-50, -50, 40, 40, "face"), 100, 80) is None
    assert grown_box(Region(200, 10, 40, 40, "face"), 100, 80) is None


def test_blur_regions_changes_exactly_the_grown_region() -> None:
    image = noise_image(200, 150)
    region = Region(60, 40, 40, 30, "face")
    blurred = blur_regions(image, [region])
    box = (54, 35, 106, 75)  # 15 % of 40 -> 6 px, 15 % of 30 -> 4.5 -> 5 px
    assert grown_box(region, 200, 150) == box
    assert changed_box(image, blurred) == box
    assert mean_abs_diff(image, blurred, box) > 40  # noise averages to ~128: about 64 expected
    outside = np.ones((150, 200), bool)
    outside[box[1] : box[3], box[0] : box[2]] = False
    assert np.array_equal(np.asarray(image)[outside], np.asarray(blurred)[outside])
    assert blurred.size == image.size and blurred.mode == image.mode


def test_blur_regions_returns_a_copy_and_leaves_its_input_alone() -> None:
    image = noise_image(64, 48)
    pixels = np.asarray(image).copy()
    blurred = blur_regions(image, [Region(10, 10, 20, 20, "face")])
    assert blurred is not image
    assert np.array_equal(np.asarray(image), pixels)
    untouched = blur_regions(image, [])
    assert untouched is not image
    assert np.array_equal(np.asarray(untouched), pixels)


def test_blur_regions_clamps_margins_at_the_edges() -> None:
    image = noise_image(120, 90, seed=1)
    corner = blur_regions(image, [Region(0, 0, 30, 20, "face")])
    assert changed_box(image, corner) == (0, 0, 35, 23)
    overhang = blur_regions(image, [Region(100, 80, 40, 40, "plate")])
    assert changed_box(image, overhang) == (94, 74, 120, 90)
    outside = blur_regions(image, [Region(500, 500, 10, 10, "plate"), Region(5, 5, 0, 0, "face")])
    assert changed_box(image, outside) is None


def test_blur_regions_destroys_fine_detail() -> None:
    """Stripes two pixels wide (text, eyes, plate characters) leave no trace inside the box."""
    stripes = np.zeros((100, 160), np.uint8)
    stripes[:, ::4] = 255
    stripes[:, 1::4] = 255
    image = Image.fromarray(np.stack([stripes] * 3, axis=-1))
    blurred = blur_regions(image, [Region(40, 20, 80, 60, "plate")])
    inside = np.asarray(blurred.crop((52, 29, 108, 71)), dtype=float)
    assert inside.std() < 0.05 * np.asarray(image, dtype=float).std()
    assert mean_abs_diff(image, blurred, (52, 29, 108, 71)) > 100


def test_blur_regions_handles_other_modes() -> None:
    grey = Image.fromarray(np.asarray(noise_image(80, 60))[:, :, 0])
    assert blur_regions(grey, [Region(10, 10, 30, 30, "face")]).mode == "L"
    palette = noise_image(80, 60).convert("P")
    blurred = blur_regions(palette, [Region(10, 10, 30, 30, "face")])
    assert blurred.mode == "RGB" and blurred.size == (80, 60)


# --- open_blurrer ----------------------------------------------------------------------------


def test_open_blurrer_opencv_is_still_available() -> None:
    for name in ("opencv", " OpenCV "):
        blurrer = open_blurrer(name)
        assert isinstance(blurrer, CascadeBlurrer)
        assert blurrer.name == "opencv"


def test_open_blurrer_none_detects_nothing() -> None:
    blurrer = open_blurrer("none")
    assert isinstance(blurrer, NoBlurrer)
    assert blurrer.name == "none"
    assert blurrer.detect(face_scene(320, 240, (160, 120), 150)) == []


def test_open_blurrer_imports_an_operator_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "operator_privacy_blur.py").write_text(
        textwrap.dedent(
            """
            from wayview.pipeline.blur import Region

            class CentreBlurrer:
                name = "centre"

                def detect(self, image):
                    w, h = image.size
                    return [Region(w // 4, h // 4, w // 2, h // 2, "face")]

            class Nameless:
                def detect(self, image):
                    return []

            class Broken:
                def __init__(self):
                    raise RuntimeError("no model file")

                def detect(self, image):
                    return []

            class NoDetect:
                name = "nodetect"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "operator_privacy_blur", raising=False)

    blurrer = open_blurrer("operator_privacy_blur:CentreBlurrer")
    assert isinstance(blurrer, Blurrer)
    assert blurrer.name == "centre"
    data = to_jpeg(noise_image(80, 60))
    out, regions = blur_jpeg(data, blurrer)
    assert regions == [Region(20, 15, 40, 30, "face")]
    assert out != data

    nameless = open_blurrer("operator_privacy_blur:Nameless")
    assert nameless.name == "operator_privacy_blur:Nameless"

    with pytest.raises(InvalidInput, match=r"Broken\(\) failed: no model file"):
        open_blurrer("operator_privacy_blur:Broken")
    with pytest.raises(InvalidInput, match="no detect"):
        open_blurrer("operator_privacy_blur:NoDetect")


def test_open_blurrer_accepts_a_dotted_path_to_a_bundled_class() -> None:
    assert isinstance(open_blurrer("wayview.pipeline.blur:NoBlurrer"), NoBlurrer)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gpu", "unknown blurrer 'gpu'"),
        ("centerface+gpu", "unknown blurrer 'centerface\\+gpu'"),
        ("wayview.pipeline.blur", "unknown blurrer"),
        ("no_such_package_xyz.blur:Blurrer", "cannot import module 'no_such_package_xyz.blur'"),
        ("wayview.pipeline.blur:Missing", "has no 'Missing'"),
        ("wayview.pipeline.blur:Region", "Region has no detect"),
        (":NoBlurrer", "unknown blurrer"),
    ],
)
def test_open_blurrer_rejects_bad_names(name: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        open_blurrer(name)


# --- CascadeBlurrer ----------------------------------------------------------------------------


def test_cascade_finds_little_in_plain_scenes(cascade: CascadeBlurrer) -> None:
    found = [cascade.detect(Image.fromarray(plain_scene(640, 480, seed))) for seed in range(3)]
    assert sum(len(regions) for regions in found) <= 1, found


@pytest.mark.parametrize(
    ("size", "center"), [(60, (150, 330)), (110, (420, 200)), (220, (300, 240))]
)
def test_cascade_detects_a_drawn_face(
    cascade: CascadeBlurrer, size: int, center: tuple[int, int]
) -> None:
    regions = cascade.detect(face_scene(640, 480, center, size, seed=size))
    faces = [r for r in regions if r.kind == "face" and covers(r, center)]
    assert faces, regions
    for face in faces:  # about the size of the drawn oval (0.75 x size wide), not the image
        assert 0.5 * size <= face.w <= 1.5 * size
    assert all(r.kind in ("face", "plate") for r in regions)


def test_cascade_maps_boxes_back_from_the_downscaled_copy() -> None:
    """A face drawn on a 1600x1200 image, detected on an 800x600 copy, lands in full pixels."""
    center, size = (1100, 500), 300
    image = face_scene(1600, 1200, center, size, seed=7)
    regions = CascadeBlurrer(max_side=800).detect(image)
    faces = [r for r in regions if r.kind == "face" and covers(r, center)]
    assert faces, regions
    for face in faces:
        assert 0.5 * size <= face.w <= 1.5 * size
        assert face.x + face.w <= 1600 and face.y + face.h <= 1200


def test_cascade_is_safe_to_share_between_threads(cascade: CascadeBlurrer) -> None:
    image = face_scene(480, 360, (240, 180), 140, seed=3)
    expected = cascade.detect(image)
    assert expected
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: cascade.detect(image), range(3)))
    assert results == [expected] * 3


def test_cascade_rejects_a_max_side_below_the_minimum_size() -> None:
    with pytest.raises(ValueError, match="max_side"):
        CascadeBlurrer(max_side=10)


# --- blur_jpeg -------------------------------------------------------------------------------


def test_blur_jpeg_returns_the_original_bytes_when_nothing_is_found(
    cascade: CascadeBlurrer,
) -> None:
    data = to_jpeg(Image.fromarray(plain_scene(320, 240, seed=5)))
    assert blur_jpeg(data, NoBlurrer()) == (data, [])
    assert blur_jpeg(data, FixedBlurrer()) == (data, [])


def test_blur_jpeg_blurs_a_detected_face(cascade: CascadeBlurrer) -> None:
    center, size = (300, 220), 160
    original = face_scene(640, 480, center, size, seed=11)
    data = to_jpeg(original)
    out, regions = blur_jpeg(data, cascade)
    faces = [r for r in regions if r.kind == "face" and covers(r, center)]
    assert faces, regions
    blurred = decode(out)
    assert blurred.format == "JPEG" and blurred.size == original.size
    decoded = decode(data)
    for face in faces:
        inner = (face.x, face.y, face.x + face.w, face.y + face.h)
        assert mean_abs_diff(decoded, blurred, inner) > 15
    assert not any(covers(r, center) for r in cascade.detect(blurred))
    far = (0, 0, 120, 480)  # left strip, away from every detection
    assert all(r.x > 140 for r in regions)
    assert mean_abs_diff(decoded, blurred, far) < 5  # only JPEG re-encoding noise


def test_blur_jpeg_keeps_the_icc_profile_and_the_stored_orientation() -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° CW for display: the stored grid must not change
    data = to_jpeg(noise_image(96, 64), icc_profile=icc, exif=exif.tobytes())
    blurrer = FixedBlurrer(Region(70, 10, 20, 40, "plate"))
    out, regions = blur_jpeg(data, blurrer)
    assert regions == blurrer.regions
    assert blurrer.seen_sizes == [(96, 64)]
    result = decode(out)
    assert result.size == (96, 64)
    assert result.info.get("icc_profile") == icc
    assert not result.getexif()  # no metadata besides the ICC profile
    assert changed_box(decode(data), result) is not None


def test_blur_jpeg_reencodes_at_quality_92() -> None:
    assert BLUR_JPEG_QUALITY == 92
    data = to_jpeg(noise_image(64, 64))
    out, _ = blur_jpeg(data, FixedBlurrer(Region(8, 8, 16, 16, "face")))
    reference = io.BytesIO()
    decode(data).save(reference, "JPEG", quality=92)
    assert decode(out).quantization == decode(reference.getvalue()).quantization


@pytest.mark.parametrize("data", [b"", b"not a jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"])
def test_blur_jpeg_rejects_corrupt_data(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        blur_jpeg(data, NoBlurrer())


# --- real photos (../shared; skipped when absent) -----------------------------------------------


def test_cascade_on_real_street_photos(cascade: CascadeBlurrer) -> None:
    """Shared street photos (faces and plates blurred upstream) give few false detections."""
    with Image.open(shared_path("data", "opensfm_lund", "images", "07.jpg")) as lund:
        lund.load()
    with Image.open(
        shared_path("data", "mapillary_tools_samples", "images", "DSC00497.JPG")
    ) as sony:
        sony.load()
    assert len(cascade.detect(lund)) <= 2
    assert len(CascadeBlurrer(max_side=1024).detect(sony)) <= 2


def test_blur_jpeg_finds_a_face_drawn_into_a_real_street_photo(cascade: CascadeBlurrer) -> None:
    source = shared_path("data", "opensfm_lund", "images", "07.jpg")
    with Image.open(source) as photo:
        rgb = np.asarray(photo.convert("RGB")).copy()
    center, size = (700, 450), 140
    draw_face(rgb, center, size)
    original = Image.fromarray(rgb)
    out, regions = blur_jpeg(to_jpeg(original), cascade)
    faces = [r for r in regions if r.kind == "face" and covers(r, center)]
    assert faces, regions
    blurred = decode(out)
    assert blurred.size == original.size
    face = faces[0]
    assert mean_abs_diff(original, blurred, (face.x, face.y, face.x + face.w, face.y + face.h)) > 15
