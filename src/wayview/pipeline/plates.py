"""wayview.pipeline.plates: licence plates found by shape and contrast, for privacy blurring.

No permissively licensed plate detector with bundled weights exists (the good YOLO fine-tunes
are AGPL-3.0; see docs/api.md, "Processing"). This is the permissive default, classical vision
on the grey image:

1. **Character strokes.** A black-hat transform (closing minus image) with a small horizontal
   kernel keeps what is darker than its surroundings and thin: characters on a bright plate,
   also window bars and text on signs. Thresholded, and closed horizontally so the characters
   of one plate join into one blob.
2. **Plate-shaped blobs.** Each blob's bounding box must be 2–8 times as wide as high and
   between `min_height` and a tenth of the photo high.
3. **Confirmation.** The blob is either the line of characters (the plate lies around it)
   or, when the characters touch the plate's dark outline, the whole plate (the characters
   lie inside it). In the line (resp. the plate less its rim) the pixels are split into ink and
   ground by Otsu's threshold; it is a plate when the ground covers at least 45 % of it, is
   even and brighter than the ink by a clear margin, is one connected piece (textures such as
   leaves and cobbles break it up), the rows just above and below the line are ground, and the
   middle rows cross more than `MIN_CHARACTERS` dark runs, no denser than characters can be
   (inside a whole plate at least two ink parts must also have a character's height and
   width).

Measured in docs/performance.md ("Perception"): about 80 % of rendered plates 50–120 px wide
are found; it misses plates in deep shadow, strongly tilted or smaller than about 45 px wide,
two-line plates and light characters on a dark ground; street-name signs and house numbers with
dark characters on a bright ground are blurred as well. An operator with a stronger model
adds it as the `yolo` part.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image as PILImage

__all__ = ["MIN_CHARACTERS", "PlateFinder", "PlateBox"]

#: Dark runs along the middle of a plate's line must number more than this (characters).
MIN_CHARACTERS = 4
#: Separate characters of full height inside a whole-plate blob (small plates blur together).
_WHOLE_CHARACTERS = 2

PlateBox = tuple[float, float, float, float, float]  # x0, y0, x1, y1, score


class PlateFinder:
    """Licence plates by shape and contrast (see the module docstring).

    Args:
        max_side: the photo is reduced to at most this long side first.
        min_height: smallest character height (pixels of the reduced photo) looked for.
    """

    name = "plates"

    def __init__(self, *, max_side: int = 2048, min_height: int = 7) -> None:
        if max_side < 64:
            raise ValueError(f"max_side must be at least 64, not {max_side}")
        self.max_side = max_side
        self.min_height = min_height

    def scale_for(self, width: int, height: int) -> float:
        """The factor (≤ 1) applied to a `width` × `height` photo before looking at it."""
        return min(1.0, self.max_side / max(width, height, 1))

    def find(self, image: PILImage.Image, full_size: tuple[int, int] | None = None
             ) -> list[PlateBox]:
        """Plates in `image`, a copy of a photo of `full_size` (default: its own size);
        boxes in `image`'s pixels."""
        full_w, full_h = full_size or image.size
        scale = self.scale_for(full_w, full_h)
        target = (max(1, round(full_w * scale)), max(1, round(full_h * scale)))
        reduced = image
        if image.width > target[0]:  # reduce first: no full-size grey copy
            reduced = image.resize(target, PILImage.Resampling.BILINEAR, reducing_gap=2.0)
        grey_image = reduced.convert("L")
        back_x = image.width / grey_image.width
        back_y = image.height / grey_image.height
        grey = np.asarray(grey_image)
        return [(x0 * back_x, y0 * back_y, x1 * back_x, y1 * back_y, s)
                for x0, y0, x1, y1, s in self._find(grey)]

    def _find(self, grey: np.ndarray) -> list[PlateBox]:
        height, width = grey.shape
        strokes = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT,
                                   cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3)))
        _, mask = cv2.threshold(strokes, 40, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE,
                                cv2.getStructuringElement(cv2.MORPH_RECT, (13, 3)))
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        found: list[PlateBox] = []
        max_h = max(self.min_height + 1, height // 10)
        for x, y, w, h, area in stats[1:count]:
            if not self.min_height <= h <= max_h or not 1.8 * h <= w <= 8.0 * h:
                continue
            if area < 0.2 * w * h:
                continue
            score = _plate_score(grey, int(x), int(y), int(w), int(h))
            if score > 0:
                mx, my = 0.12 * w, 0.35 * h  # the characters' box → the plate's
                found.append((max(0.0, x - mx), max(0.0, y - my), min(width, x + w + mx),
                              min(height, y + h + my), score))
        return found


def _plate_score(grey: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    """How plate-like the blob (x, y, w, h) is: 0 = not a plate, else a score in (0, 1].

    The blob is either the line of characters (the plate lies around it) or, when the
    characters touch the plate's dark outline, the whole plate (the characters lie inside).
    """
    pad = max(1, h // 4)
    top, left = max(0, y - pad), max(0, x - pad)
    crop = grey[top:y + h + pad, left:x + w + pad]
    around = _characters(crop, y - top, x - left, w, h, rim=max(1, pad // 2))
    if around:
        return around
    inset = max(1, round(h * 0.12))
    if h - 2 * inset < 4 or w - 2 * inset < 8:
        return 0.0
    inner = grey[y + inset:y + h - inset, x + inset:x + w - inset]
    return _characters(inner, 0, 0, w - 2 * inset, h - 2 * inset, rim=0)


def _characters(crop: np.ndarray, y: int, x: int, w: int, h: int, *, rim: int) -> float:
    """Dark characters on an even, bright ground in the line (x, y, w, h) of `crop`; `rim`
    rows above and below the line must be ground."""
    if crop.size == 0:
        return 0.0
    _, dark = cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    bright = crop[dark == 0]
    ink = crop[dark > 0]
    if bright.size < 0.45 * crop.size or ink.size == 0:
        return 0.0
    contrast = float(bright.mean()) - float(ink.mean())
    if contrast < 50 or float(bright.std()) > 0.35 * contrast:
        return 0.0  # a plate's ground is even and much brighter than its characters
    # The ground is one piece around the characters; textures (leaves, cobbles) break it up.
    count, _, stats, _ = cv2.connectedComponentsWithStats(
        (dark == 0).astype(np.uint8), connectivity=4)
    if count < 2 or stats[1:, cv2.CC_STAT_AREA].max() < 0.85 * bright.size:
        return 0.0
    if rim:
        line = dark[:, x:x + w] > 0
        edge = np.concatenate([line[max(0, y - rim):y], line[y + h:y + h + rim]])
        if edge.size and float(edge.mean()) > 0.3:
            return 0.0
    # Characters cross the middle rows of the line: count the dark runs along three rows.
    runs = []
    for frac in (0.4, 0.5, 0.6):
        row = dark[y + int(frac * h), x:x + w] > 0
        runs.append(int(np.count_nonzero(row[1:] & ~row[:-1])) + int(row[0]))
    found = sorted(runs)[1]
    if found < MIN_CHARACTERS + 1 or found > 4 * w / max(1, h):
        return 0.0  # too few for a plate, or denser than characters can be: a texture
    if not rim:
        # Inside a whole plate: the ink must be separate characters of about the line's
        # height (cobble joints and leaf edges are long, thin or small).
        count, _, stats, _ = cv2.connectedComponentsWithStats(dark[y:y + h, x:x + w],
                                                              connectivity=8)
        chars = sum(1 for _, _, cw, ch, _ in stats[1:count]
                    if 0.4 * h <= ch <= h and cw <= 1.2 * ch)
        if chars < _WHOLE_CHARACTERS:
            return 0.0
    return round(min(1.0, found / 10), 3)
