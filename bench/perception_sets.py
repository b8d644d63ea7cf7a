"""bench/perception_sets.py: the labelled evaluation sets of bench/perception.py.

Real photos are read from ../shared/data (never copied into the repository); their labels are
in bench/perception/labels.json. Composites are generated deterministically from a seed:

- **faces**: the 22 faces of the six group photos in the MIT npm package
  `@vladmandic/face-api@1.7.15` (`demo/sample1–6.jpg`; fetched once with `npm pack` into
  bench/.data/, boxes in bench/perception/face_sources.json), each cut out with a margin of
  half its height and pasted with soft edges into the Lund, Berlin and Sony street photos at
  face heights of 60, 30, 24 and 16 px of the photo's own pixels;
- **plates**: licence plates rendered with Pillow's bundled font (EU-style white with a blue
  band, Swedish/UK-style, yellow UK rear, US-style), random letters and digits, on a
  car-coloured bumper patch, slightly rotated and blurred, pasted into the same photos at plate
  widths of 120, 80 and 50 px.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
LABELS = ROOT / "bench" / "perception"
CACHE = ROOT / "bench" / ".data" / "perception"
FACE_PACKAGE = "@vladmandic/face-api@1.7.15"

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the photo's pixels


@dataclass
class Sample:
    """One photo of an evaluation set and what is in it."""

    name: str
    image: Image.Image
    faces: list[Box] = field(default_factory=list)
    plates: list[Box] = field(default_factory=list)
    ignore: list[Box] = field(default_factory=list)  # blurred upstream, statues: no verdict
    sizes: dict[int, str] = field(default_factory=dict)  # id(box) -> size class
    labelled: bool = True  # False: what is in it is not labelled (only timing counts)


def shared_photo(*parts: str) -> Image.Image:
    with Image.open(SHARED.joinpath(*parts)) as im:
        return im.convert("RGB")


def labels() -> dict[str, dict[str, list[list[float]]]]:
    return json.loads((LABELS / "labels.json").read_text())


def real_samples() -> list[Sample]:
    """Lund (29), Berlin (3) and the two Sony photos with their labels."""
    out = []
    for name, entry in labels().items():
        if name.startswith("_"):
            continue
        folder, _, file = name.partition("/")
        path = {"lund": ("opensfm_lund", "images"), "berlin": ("opensfm_berlin", "images"),
                "sony": ("mapillary_tools_samples", "images")}[folder]
        sample = Sample(name, shared_photo(*path, file))
        sample.faces = [tuple(b) for b in entry.get("faces", [])]
        sample.plates = [tuple(b) for b in entry.get("plates", [])]
        sample.ignore = [tuple(b) for b in entry.get("ignore", [])]
        sample.labelled = not entry.get("unlabelled", False)
        for box in sample.faces + sample.plates:
            sample.sizes[id(box)] = "real"
        out.append(sample)
    return out


def face_sources() -> list[Image.Image]:
    """The 22 source faces, each cut out with half its height of margin (face centred)."""
    folder = CACHE / "face-api"
    if not (folder / "package" / "demo" / "sample6.jpg").exists():
        if shutil.which("npm") is None:
            raise SystemExit("npm is needed once to fetch " + FACE_PACKAGE)
        folder.mkdir(parents=True, exist_ok=True)
        tgz = subprocess.run(["npm", "pack", FACE_PACKAGE, "--silent"], cwd=folder,
                             check=True, capture_output=True, text=True).stdout.split()[-1]
        with tarfile.open(folder / tgz) as archive:
            archive.extractall(folder, filter="data")
    boxes = json.loads((LABELS / "face_sources.json").read_text())
    crops = []
    for file, faces in boxes.items():
        if file.startswith("_"):
            continue
        with Image.open(folder / "package" / "demo" / file) as im:
            photo = im.convert("RGB")
        for x0, y0, x1, y1 in faces:
            m = 0.5 * (y1 - y0)
            crops.append(photo.crop((round(x0 - m), round(y0 - m), round(x1 + m), round(y1 + m))))
    return crops


def soft_mask(size: tuple[int, int]) -> Image.Image:
    w, h = size
    bw, bh = max(1, w // 8), max(1, h // 8)
    mask = Image.new("L", size, 0)
    mask.paste(255, (bw, bh, max(bw + 1, w - bw), max(bh + 1, h - bh)))
    return mask.filter(ImageFilter.GaussianBlur(max(0.6, w / 16)))


def paste_face(photo: Image.Image, crop: Image.Image, height: int, cx: float, cy: float) -> Box:
    """Paste a source crop so its face is `height` px high, centred at (cx, cy); the face box."""
    k = height / (crop.height / 2)  # the crop is twice the face height
    scaled = crop.resize((max(1, round(crop.width * k)), max(1, round(crop.height * k))),
                         Image.Resampling.LANCZOS)
    photo.paste(scaled, (round(cx - scaled.width / 2), round(cy - scaled.height / 2)),
                soft_mask(scaled.size))
    face_w = scaled.width / 2
    return (cx - face_w / 2, cy - height / 2, cx + face_w / 2, cy + height / 2)


_PLATE_STYLES = (
    # background, text colour, band colour (None: no band), aspect (width / height)
    ((245, 245, 240), (15, 15, 20), (20, 60, 170), 4.7),   # EU
    ((250, 250, 245), (10, 10, 10), None, 4.5),             # white, no band
    ((245, 200, 30), (10, 10, 10), (20, 60, 170), 4.7),    # yellow rear (UK/NL)
    ((235, 235, 230), (30, 40, 110), None, 2.0),            # US-style
)
_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def render_plate(rng: random.Random, width: int) -> Image.Image:
    """A licence plate `width` px wide (rendered at 6× and reduced, so strokes are smooth)."""
    bg, fg, band, aspect = rng.choice(_PLATE_STYLES)
    big_w = width * 6
    big_h = round(big_w / aspect)
    plate = Image.new("RGB", (big_w, big_h), bg)
    draw = ImageDraw.Draw(plate)
    left = 0
    if band is not None:
        left = round(big_h * 0.42)
        draw.rectangle((0, 0, left, big_h), fill=band)
    text = ("".join(rng.choice(_LETTERS) for _ in range(3)) + " "
            + "".join(rng.choice("0123456789") for _ in range(rng.choice((2, 3))))
            + rng.choice(("", rng.choice(_LETTERS))))
    size = round(big_h * (0.72 if aspect > 3 else 0.45))
    font = ImageFont.load_default(size=size)
    box = draw.textbbox((0, 0), text, font=font)
    if box[2] - box[0] > 0.86 * (big_w - left):  # real plates keep a margin around the text
        size = int(size * 0.86 * (big_w - left) / (box[2] - box[0]))
        font = ImageFont.load_default(size=size)
        box = draw.textbbox((0, 0), text, font=font)
    tw, th = box[2] - box[0], box[3] - box[1]
    draw.text((left + (big_w - left - tw) / 2 - box[0], (big_h - th) / 2 - box[1]), text,
              fill=fg, font=font)
    draw.rectangle((0, 0, big_w - 1, big_h - 1), outline=(40, 40, 40), width=max(2, big_h // 25))
    return plate.resize((width, max(1, round(width / aspect))), Image.Resampling.LANCZOS)


def paste_plate(photo: Image.Image, rng: random.Random, width: int, cx: float, cy: float) -> Box:
    """A plate on a bumper-coloured patch, tilted by up to 4°, centred at (cx, cy)."""
    plate = render_plate(rng, width)
    car = tuple(rng.randint(20, 200) for _ in range(3))
    patch = Image.new("RGB", (round(plate.width * 1.8), round(plate.height * 3.0)), car)
    patch.paste(plate, ((patch.width - plate.width) // 2, (patch.height - plate.height) // 2))
    angle = rng.uniform(-4, 4)
    mask = Image.new("L", patch.size, 255).rotate(angle, expand=True)
    patch = patch.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    patch = patch.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    photo.paste(patch, (round(cx - patch.width / 2), round(cy - patch.height / 2)), mask)
    half_w = plate.width / 2 + abs(np.sin(np.radians(angle))) * plate.height / 2
    half_h = plate.height / 2 + abs(np.sin(np.radians(angle))) * plate.width / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


BACKGROUNDS = [("opensfm_lund", "images", f"{k:02d}.jpg") for k in (3, 9, 15, 21, 27)] + [
    ("opensfm_berlin", "images", "02.jpg"),
    ("mapillary_tools_samples", "images", "DSC00001.JPG"),
    ("mapillary_tools_samples", "images", "DSC00497.JPG"),
]
FACE_HEIGHTS = (60, 30, 24, 16)
PLATE_WIDTHS = (120, 80, 50)


def _grid(photo: Image.Image, count: int, cell: float, rng: random.Random
          ) -> list[tuple[float, float]]:
    """`count` well separated points in the lower two thirds of the photo."""
    w, h = photo.size
    cols = max(1, int(w // cell))
    rows = max(1, int((h * 0.62) // cell))
    cells = [(c, r) for r in range(rows) for c in range(cols)]
    rng.shuffle(cells)
    return [((c + 0.5) * w / cols + rng.uniform(-0.1, 0.1) * cell,
             h * 0.3 + (r + 0.5) * cell + rng.uniform(-0.1, 0.1) * cell)
            for c, r in cells[:count]]


def face_composites(seed: int = 15) -> list[Sample]:
    """Every source face pasted at every size into the backgrounds (each photo holds faces of
    one size, spread so that none overlap)."""
    crops = face_sources()
    rng = random.Random(seed)
    out = []
    for height in FACE_HEIGHTS:
        order = list(range(len(crops)))
        rng.shuffle(order)
        per = -(-len(order) // len(BACKGROUNDS))
        for b, parts in enumerate(BACKGROUNDS):
            chosen = order[b * per:(b + 1) * per]
            if not chosen:
                continue
            photo = shared_photo(*parts)
            sample = Sample(f"faces{height}/{parts[0]}/{parts[-1]}", photo)
            for k, point in zip(chosen, _grid(photo, len(chosen), max(4 * height, 90), rng),
                                strict=False):
                box = paste_face(photo, crops[k], height, *point)
                sample.faces.append(box)
                sample.sizes[id(box)] = f"{height} px"
            out.append(sample)
    return out


def plate_composites(seed: int = 15, per_photo: int = 6) -> list[Sample]:
    """Rendered plates at every width in every background."""
    rng = random.Random(seed)
    out = []
    for width in PLATE_WIDTHS:
        for parts in BACKGROUNDS:
            photo = shared_photo(*parts)
            sample = Sample(f"plates{width}/{parts[0]}/{parts[-1]}", photo)
            for point in _grid(photo, per_photo, max(3 * width, 120), rng):
                box = paste_plate(photo, rng, width, *point)
                sample.plates.append(box)
                sample.sizes[id(box)] = f"{width} px wide"
            out.append(sample)
    return out


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
