"""wayview.pipeline.signs: traffic signs by colour and shape (classical vision, no weights).

The default detector of `pipeline.detectors` ("signs"). It finds the signs whose colour and
outline say what they are, in any country that uses the Vienna-convention shapes:

| value | what it looks for |
| --- | --- |
| `regulatory--stop--g1` | a red octagon filled red with white letters |
| `regulatory--yield--g1` | a red-rimmed triangle pointing down |
| `regulatory--no-entry--g1` | a red disc with a white horizontal bar |
| `regulatory--maximum-speed-limit-N--g1` | a red ring around a white disc whose number is read |
| `regulatory--priority-road--g4` | a yellow diamond standing on a corner |
| `information--pedestrians-crossing--g1` | a blue square with a white triangle inside |
| `information--parking--g1` | a blue square with a white "P" |

How: the photo is scaled to at most `WORK_WIDTH` pixels wide and converted to HSV; masks of
saturated red, blue and yellow are cleaned with a morphological closing; every compact blob of
sign size is classified by its outline (polygon approximation, fill of its box, convexity)
and by what lies inside it (the white share and where it sits). Numbers are read by
comparing the white digits against digits rendered at run time with the bundled font of
Pillow (`ImageFont.load_default`), so nothing is downloaded and no weights are shipped.

What it does not do, measured in `bench/perception.py`: signs smaller than `MIN_SIDE_PX` in the
working image, signs seen from far off-axis, warning signs (their symbol decides the value) and
the street objects of the point layer (lights, hydrants, benches) — an ONNX drop-in
(`pipeline.detectors = signs,onnx`) adds those.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from wayview.pipeline.detectors import Found

__all__ = ["MIN_SIDE_PX", "WORK_WIDTH", "ClassicalSignDetector"]

#: Photos are analysed at this width at most (Lund's 1024 px frames as they are).
WORK_WIDTH = 2048
#: Blobs whose box is smaller on either side (working pixels) are ignored.
MIN_SIDE_PX = 7
#: Blobs larger than this share of the frame's shorter side are not signs (roofs, cars).
MAX_SIDE_FRACTION = 0.35
#: Median saturation and value (OpenCV HSV, 0–255) of the red of a sign.
_SIGN_RED_MIN_S = 125
_SIGN_RED_MIN_V = 75
#: Share of a red sign's area that may be much darker than its red.
_MAX_DARK_SHARE = 0.06
_SPEEDS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130)


@dataclass(frozen=True, slots=True)
class _Blob:
    x: int
    y: int
    w: int
    h: int
    contour: np.ndarray


class ClassicalSignDetector:
    """Traffic signs by colour masks and outline shape (see the module docstring)."""

    name = "signs"

    def __init__(self, min_score: float = 0.35) -> None:
        self.min_score = min_score

    def detect(self, image: PILImage.Image) -> list[Found]:
        """Signs in `image`, normalised to its size."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        scale = min(1.0, WORK_WIDTH / rgb.width)
        if scale < 1.0:
            rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)),
                             PILImage.Resampling.BILINEAR)
        bgr = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)
        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        masks = _colour_masks(hsv)
        white = _white_mask(hsv)
        height, width = hsv.shape[:2]
        found: list[Found] = []
        for colour in ("red", "blue", "yellow"):
            mask = masks[colour]
            for blob in _blobs(mask, width, height):
                hit = _classify(colour, blob, masks, white, hsv)
                if hit is None:
                    continue
                value, score = hit
                if score < self.min_score:
                    continue
                polygon = tuple((min(1.0, max(0.0, px / width)), min(1.0, max(0.0, py / height)))
                                for px, py in _whole_sign(_outline(blob), value))
                found.append(Found(value, round(score, 3), polygon))
        return _suppress_overlaps(found)


def _colour_masks(hsv: np.ndarray) -> dict[str, np.ndarray]:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    red = (((h <= 8) | (h >= 165)) & (s >= 100) & (v >= 50))
    blue = ((h >= 100) & (h <= 128) & (s >= 120) & (v >= 45))
    yellow = ((h >= 15) & (h <= 32) & (s >= 130) & (v >= 120))
    kernel = np.ones((3, 3), np.uint8)
    out = {name: cv2.morphologyEx(mask.astype(np.uint8) * 255, cv2.MORPH_CLOSE, kernel)
           for name, mask in (("red", red), ("blue", blue), ("yellow", yellow))}
    out["red_raw"] = red.astype(np.uint8) * 255
    return out


def _white_mask(hsv: np.ndarray) -> np.ndarray:
    return ((hsv[..., 1] <= 70) & (hsv[..., 2] >= 140)).astype(np.uint8) * 255


def _blobs(mask: np.ndarray, width: int, height: int) -> list[_Blob]:
    """Sign-sized blobs of a colour mask. A blob much taller than wide (a sign with a plate
    or its pole below it) is cut to its top square."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    largest = MAX_SIDE_FRACTION * min(width, height)
    out = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        if w < MIN_SIDE_PX or h < MIN_SIDE_PX or w > largest or h > largest:
            continue
        if h > 1.25 * w:
            part = np.zeros((w + 2, w + 2), np.uint8)
            part[1:-1, 1:-1] = mask[y:y + w, x:x + w]
            cut = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
            if not cut:
                continue
            contour = max(cut, key=cv2.contourArea) + np.array([x - 1, y - 1])
            x, y, w, h = cv2.boundingRect(contour)
            if w < MIN_SIDE_PX or h < MIN_SIDE_PX:
                continue
        if not 0.6 <= w / h <= 1.6:
            continue
        out.append(_Blob(x, y, w, h, contour))
    return out


def _outline(blob: _Blob) -> list[tuple[int, int]]:
    hull = cv2.convexHull(blob.contour)
    approx = cv2.approxPolyDP(hull, 0.02 * cv2.arcLength(hull, True), True)
    points = [(int(p[0][0]), int(p[0][1])) for p in approx]
    if len(points) < 3:
        points = [(blob.x, blob.y), (blob.x + blob.w, blob.y),
                  (blob.x + blob.w, blob.y + blob.h), (blob.x, blob.y + blob.h)]
    return points


#: The white rim around the coloured face, as a share of the sign's width per side: the box
#: should cover the whole sign (its size tells the distance to it).
_RIM = {"regulatory--stop": 0.04, "regulatory--priority-road": 0.14}


def _whole_sign(points: list[tuple[int, int]], value: str) -> list[tuple[float, float]]:
    """The outline of the coloured face grown to the whole sign: by its white rim, and by
    the pixel or so that softening and the colour thresholds take from every edge."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    cx, cy = (min(xs) + max(xs) + 1) / 2, (min(ys) + max(ys) + 1) / 2
    half = max(1.0, (max(xs) + 1 - min(xs)) / 2)
    rim = next((r for prefix, r in _RIM.items() if value.startswith(prefix)), 0.0)
    grow = (half + 1.0) / half / (1 - 2 * rim)
    return [(cx + (x + 0.5 - cx) * grow, cy + (y + 0.5 - cy) * grow) for x, y in points]


def _shape(blob: _Blob) -> tuple[int, float, float, float]:
    """(vertices of the hull's approximation, fill of the box by the hull, solidity of the
    blob, circularity of the hull)."""
    hull = cv2.convexHull(blob.contour)
    hull_area = float(cv2.contourArea(hull))
    perimeter = float(cv2.arcLength(hull, True))
    approx = cv2.approxPolyDP(hull, 0.04 * perimeter, True)
    area = float(cv2.contourArea(blob.contour))
    fill = hull_area / float(blob.w * blob.h)
    solidity = area / hull_area if hull_area else 0.0
    circularity = 4 * math.pi * hull_area / (perimeter * perimeter) if perimeter else 0.0
    return len(approx), fill, solidity, circularity


def _inside(blob: _Blob, mask: np.ndarray) -> np.ndarray:
    """`mask` within the blob's hull (other pixels 0)."""
    hull = cv2.convexHull(blob.contour)
    region = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(region, hull, 255)
    box = (slice(blob.y, blob.y + blob.h), slice(blob.x, blob.x + blob.w))
    return np.asarray(cv2.bitwise_and(mask[box], region[box]))


def _share(part: np.ndarray, whole: np.ndarray) -> float:
    total = int(np.count_nonzero(whole))
    return int(np.count_nonzero(part)) / total if total else 0.0


def _classify(colour: str, blob: _Blob, masks: dict[str, np.ndarray], white: np.ndarray,
              hsv: np.ndarray) -> tuple[str, float] | None:
    mask = masks[colour]
    vertices, fill, solidity, circularity = _shape(blob)
    hull_region = _inside(blob, np.full(mask.shape, 255, np.uint8))
    colour_in = _inside(blob, mask)
    white_in = _inside(blob, white)
    colour_share = _share(colour_in, hull_region)
    white_share = _share(white_in, hull_region)
    if colour == "red":
        # Sign red is vivid and lit: dull or dark reds are brick, doors and shadows.
        box = (slice(blob.y, blob.y + blob.h), slice(blob.x, blob.x + blob.w))
        red_px = masks["red_raw"][box] > 0
        if not red_px.any() or float(np.median(hsv[..., 1][box][red_px])) < _SIGN_RED_MIN_S \
                or float(np.median(hsv[..., 2][box][red_px])) < _SIGN_RED_MIN_V:
            return None
        light_share = _share(_light_inside(blob, masks["red_raw"], hsv), hull_region)
        # A red car's windows, a shirt's folds: dark areas inside; a sign has none.
        dark = hsv[..., 2][box] < 0.55 * float(np.median(hsv[..., 2][box][red_px]))
        if _share(dark & (hull_region > 0), hull_region) > _MAX_DARK_SHARE:
            return None
        return _classify_red(blob, vertices, fill, solidity, circularity, colour_share,
                             white_share, light_share, white_in, colour_in)
    if colour == "blue":
        return _classify_blue(blob, vertices, fill, colour_share, white_share, white_in)
    return _classify_yellow(blob, vertices, fill, colour_share, white)


def _closeness(value: float, target: float, tolerance: float) -> float:
    """1 at `target`, falling linearly to 0 at `tolerance` away."""
    return max(0.0, 1.0 - abs(value - target) / tolerance)


def _light_inside(blob: _Blob, red_raw: np.ndarray, hsv: np.ndarray) -> np.ndarray:
    """Pixels inside the blob's hull clearly lighter or paler than its red: the white
    letters or symbol of a red sign (small letters blur into pink, so the red mask alone
    does not separate them)."""
    box = (slice(blob.y, blob.y + blob.h), slice(blob.x, blob.x + blob.w))
    value = hsv[..., 2][box].astype(np.float32)
    sat = hsv[..., 1][box].astype(np.float32)
    red = red_raw[box] > 0
    if not red.any():
        return np.zeros(value.shape, np.uint8)
    pale = (value > float(np.median(value[red])) + 25) | (sat < 0.6 * float(np.median(sat[red])))
    hull = _inside(blob, np.full(red_raw.shape, 255, np.uint8)) > 0
    return (pale & hull).astype(np.uint8) * 255


def _classify_red(blob: _Blob, vertices: int, fill: float, solidity: float,
                  circularity: float, red_share: float, white_share: float,
                  light_share: float, white_in: np.ndarray, red_in: np.ndarray
                  ) -> tuple[str, float] | None:
    # Down-pointing triangle: half the box, a vertex at the bottom centre.
    if vertices == 3 and 0.35 <= fill <= 0.65:
        ys = blob.contour[:, 0, 1]
        bottom_x = blob.contour[int(np.argmax(ys)), 0, 0]
        # Its white middle is small at 20-odd pixels (a sixth of the triangle).
        if abs(bottom_x - (blob.x + blob.w / 2)) < 0.2 * blob.w and white_share > 0.12:
            return "regulatory--yield--g1", 0.5 + 0.5 * _closeness(fill, 0.5, 0.2)
        return None
    aspect = blob.w / blob.h
    if circularity < 0.78 or not 0.6 <= fill <= 0.93 or not 0.75 <= aspect <= 1.15:
        return None
    # Mostly red inside: a stop sign (octagon, white letters) or no entry (white bar).
    large = blob.w >= 16  # large enough for letters or a bar to show
    if solidity >= 0.82 and (red_share >= 0.85 or (large and red_share >= 0.55)):
        if large and _horizontal_bar(white_in, blob):
            return "regulatory--no-entry--g1", 0.5 + 0.4 * _closeness(circularity, 0.95, 0.2)
        # An octagon fills 83 % of its box (a small, soft one ~70 % but stays round); blobs
        # of cloth and petals fill less and are ragged.
        if fill < 0.72 and not (fill >= 0.68 and circularity >= 0.92):
            return None
        octagonal = 0.5 * _closeness(fill, 0.83, 0.15) + 0.5 * _closeness(circularity, 0.93,
                                                                           0.15)
        if large:
            if not 0.02 <= light_share <= 0.45:
                return None
            return "regulatory--stop--g1", 0.55 + 0.45 * octagonal
        # Small: the outline alone, with less confidence as it shrinks.
        return "regulatory--stop--g1", (0.3 + 0.4 * octagonal) * min(1.0, blob.w / 12)
    # A red ring around white: a speed limit whose number is read.
    if red_share < 0.55 and white_share >= 0.3:
        speed, match = _read_speed(white_in, red_in)
        if speed is not None:
            return (f"regulatory--maximum-speed-limit-{speed}--g1",
                    0.4 + 0.6 * match * _closeness(circularity, 0.92, 0.2))
    return None


def _horizontal_bar(white_in: np.ndarray, blob: _Blob) -> bool:
    """A white bar across the middle third: rows there mostly white, rows above and below not."""
    h, w = white_in.shape
    rows = np.count_nonzero(white_in, axis=1) / max(1, w)
    middle = rows[int(h * 0.4):int(h * 0.6) + 1]
    outer = np.concatenate([rows[int(h * 0.12):int(h * 0.3)], rows[int(h * 0.7):int(h * 0.88)]])
    return bool(middle.size and outer.size and middle.mean() > 0.5 and outer.mean() < 0.15)


def _classify_blue(blob: _Blob, vertices: int, fill: float, blue_share: float,
                   white_share: float, white_in: np.ndarray) -> tuple[str, float] | None:
    if vertices != 4 or fill < 0.8 or blue_share < 0.35 or not 0.05 <= white_share <= 0.6:
        return None
    symbol = cv2.findContours(white_in, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not symbol:
        return None
    largest = max(symbol, key=cv2.contourArea)
    x, y, w, h = cv2.boundingRect(largest)
    if w < 0.3 * blob.w or h < 0.3 * blob.h:
        return None
    approx = cv2.approxPolyDP(cv2.convexHull(largest), 0.08 * cv2.arcLength(largest, True), True)
    area = cv2.contourArea(largest) / float(w * h)
    if len(approx) == 3 and area < 0.7:
        return "information--pedestrians-crossing--g1", 0.5 + 0.4 * _closeness(fill, 0.95, 0.2)
    if h > 1.2 * w and 0.35 <= area <= 0.75:
        return "information--parking--g1", 0.5 + 0.4 * _closeness(fill, 0.95, 0.2)
    return None


def _classify_yellow(blob: _Blob, vertices: int, fill: float, yellow_share: float,
                     white: np.ndarray) -> tuple[str, float] | None:
    # A diamond: four corners at the middles of the box's sides, half the box filled.
    if vertices != 4 or not 0.4 <= fill <= 0.65 or yellow_share < 0.5:
        return None
    corners = cv2.approxPolyDP(cv2.convexHull(blob.contour),
                               0.04 * cv2.arcLength(blob.contour, True), True)[:, 0, :]
    cx, cy = blob.x + blob.w / 2, blob.y + blob.h / 2
    on_axes = sum(1 for px, py in corners
                  if abs(px - cx) < 0.2 * blob.w or abs(py - cy) < 0.2 * blob.h)
    if on_axes < 4:
        return None
    return "regulatory--priority-road--g4", 0.5 + 0.4 * _closeness(fill, 0.5, 0.15)


@functools.lru_cache(maxsize=1)
def _digit_templates() -> dict[int, np.ndarray]:
    """Each speed rendered white-on-black at 48 px, cropped to its ink."""
    font = ImageFont.load_default(size=40)
    out = {}
    for speed in _SPEEDS:
        canvas = PILImage.new("L", (120, 60), 0)
        ImageDraw.Draw(canvas).text((4, 4), str(speed), fill=255, font=font)
        ink = np.asarray(canvas)
        ys, xs = np.nonzero(ink > 128)
        out[speed] = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return out


def _read_speed(white_in: np.ndarray, red_in: np.ndarray) -> tuple[int | None, float]:
    """The number on a speed-limit disc: the dark ink inside the white disc, compared with
    rendered numbers (normalised cross-correlation); (speed, match 0–1) or (None, 0)."""
    h, w = white_in.shape
    if h < 14 or w < 14:
        return None, 0.0
    disc = cv2.morphologyEx(white_in, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    filled = np.zeros_like(disc)
    contours = cv2.findContours(disc, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    if not contours:
        return None, 0.0
    cv2.drawContours(filled, [max(contours, key=cv2.contourArea)], -1, 255, -1)
    # Off the disc's soft edge (its anti-aliased rim is neither white nor red).
    margin = max(1, round(0.06 * w))
    filled = cv2.erode(filled, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    ink = cv2.bitwise_and(filled, cv2.bitwise_not(white_in))
    ink = cv2.bitwise_and(ink, cv2.bitwise_not(red_in))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink)
    for label in range(1, count):
        if stats[label, cv2.CC_STAT_AREA] < 3:
            ink[labels == label] = 0
    ys, xs = np.nonzero(ink)
    if ys.size < 10:
        return None, 0.0
    crop = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    best, best_score = None, 0.0
    for speed, template in _digit_templates().items():
        aspect_t = template.shape[1] / template.shape[0]
        aspect_c = crop.shape[1] / crop.shape[0]
        if not 0.7 <= aspect_c / aspect_t <= 1.4:
            continue
        resized = cv2.resize(template.astype(np.float32), (crop.shape[1], crop.shape[0]),
                             interpolation=cv2.INTER_AREA)
        score = float(cv2.matchTemplate(crop, resized, cv2.TM_CCOEFF_NORMED)[0][0])
        if score > best_score:
            best, best_score = speed, score
    if best is None or best_score < 0.45:
        return None, 0.0
    return best, best_score


def _suppress_overlaps(found: list[Found]) -> list[Found]:
    """Of boxes overlapping by more than half, keep the best scored."""
    kept: list[Found] = []
    for item in sorted(found, key=lambda f: -f.score):
        u0, v0, u1, v1 = item.box
        if all(_iou((u0, v0, u1, v1), other.box) < 0.5 for other in kept):
            kept.append(item)
    return kept


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
