"""bench/perception.py: what the perception stages find and miss, and what they cost (issue #15).

    python bench/perception.py [--write-docs] [--images 24] [--threads 2] [--skip-throughput]

One command, one table per section:

- **faces**: recall per face height (composites of 22 real faces pasted at 60/30/24/16 px into
  the Lund, Berlin and Sony photos) and precision; false blurred area on the 29 Lund frames
  (target < 1 % of pixels); the same for the old OpenCV cascades;
- **plates**: recall per plate width (rendered plates at 120/80/50 px in the same photos), the
  one real unblurred plate of Lund frame 17, precision, false blurred area on Lund;
- **cost**: CPU ms per photo of each finder at the photo sizes of the shared data;
- **throughput**: bench/pipeline.py's measurement (2048 × 1536 synthetic camera-sized JPEGs,
  `ImageProcessor.derive` on 2 threads) with the blurrer off, the old `opencv` and the new
  default in one run (target: the default ≥ 2 × the 1.07 images/s `opencv` had);
- *signs* and *map features*: the classical sign detector on labelled real photos and
  composites, and the Lund stop sign as map features (bench/perception_signs.py).

The evaluation sets are built by bench/perception_sets.py (labels in bench/perception/; images
read from ../shared/data, faces from an npm package fetched once into bench/.data/).

Matching: a face or plate counts as found when the union of the blurred boxes (grown by the
blur margin, as `blur_jpeg` pixelates them) covers at least 70 % of its labelled box. A
detection is *true* when it overlaps a labelled face or plate, *background* when it lies on
something the clean background photo already showed (upstream-blurred faces, statues) or on
an `ignore` box, and *false* otherwise; precision = true ÷ (true + false).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

import perception_sets as sets  # noqa: E402
import perception_signs  # noqa: E402

from wayview.pipeline.blur import (  # noqa: E402
    CascadeBlurrer,
    PrivacyBlurrer,
    Region,
    grown_box,
    open_blurrer,
)
from wayview.settings import PipelineSettings  # noqa: E402

DOCS = BENCH.parent / "docs" / "performance.md"
START, END = "<!-- bench/perception.py:start -->", "<!-- bench/perception.py:end -->"
COVER = 0.7

Box = tuple[float, float, float, float]
Finder = Callable[[Image.Image], list[Region]]


# --- matching ------------------------------------------------------------------------------


def blurred_mask(regions: Iterable[Region], size: tuple[int, int]) -> np.ndarray:
    width, height = size
    mask = np.zeros((height, width), bool)
    for region in regions:
        box = grown_box(region, width, height)
        if box is not None:
            mask[box[1]:box[3], box[0]:box[2]] = True
    return mask


def box_mask(boxes: Iterable[Box], size: tuple[int, int]) -> np.ndarray:
    width, height = size
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, int(y0)):max(0, int(np.ceil(y1))), max(0, int(x0)):max(0, int(np.ceil(x1)))] \
            = True
    return mask


def covered(mask: np.ndarray, box: Box) -> bool:
    x0, y0, x1, y1 = (max(0, int(round(v))) for v in box)
    part = mask[y0:y1, x0:x1]
    return part.size > 0 and float(part.mean()) >= COVER


def overlaps(region: Region, box: Box) -> bool:
    return (region.x < box[2] and box[0] < region.x + region.w and region.y < box[3]
            and box[1] < region.y + region.h)


class Tally:
    """Found / labelled per size class, and true / false / background detections."""

    def __init__(self) -> None:
        self.found: dict[str, list[int]] = {}
        self.true = self.false = self.background = 0
        self.seconds = 0.0
        self.photos = 0

    def add(self, sample: sets.Sample, labelled: list[Box], regions: list[Region],
            background: list[Region]) -> None:
        mask = blurred_mask(regions, sample.image.size)
        for box in labelled:
            row = self.found.setdefault(sample.sizes.get(id(box), "real"), [0, 0])
            row[0] += covered(mask, box)
            row[1] += 1
        for region in regions:
            if any(overlaps(region, box) for box in labelled):
                self.true += 1
            elif any(overlaps(region, box) for box in sample.ignore) or any(
                    overlaps(region, box_of(b)) for b in background):
                self.background += 1
            else:
                self.false += 1

    def recall(self, *sizes: str) -> tuple[int, int]:
        found = sum(self.found.get(s, [0, 0])[0] for s in sizes)
        total = sum(self.found.get(s, [0, 0])[1] for s in sizes)
        return found, total

    def precision(self) -> str:
        done = self.true + self.false
        return f"{self.true / done * 100:.1f} %" if done else "—"


def box_of(region: Region) -> Box:
    return (region.x, region.y, region.x + region.w, region.y + region.h)


def pct(found: int, total: int) -> str:
    return f"{found}/{total} ({found / total * 100:.1f} %)" if total else "—"


def timed(finder: Finder, image: Image.Image, tally: Tally) -> list[Region]:
    started = time.process_time()
    regions = finder(image)
    tally.seconds += time.process_time() - started
    tally.photos += 1
    return regions


# --- finders --------------------------------------------------------------------------------


def finders() -> dict[str, tuple[Finder, Finder]]:
    """name → (faces, plates) finders returning full-resolution regions."""
    default = open_blurrer()
    assert isinstance(default, PrivacyBlurrer) and default.faces and default.plates
    faces, plates = default.faces, default.plates
    cascade = CascadeBlurrer()

    def kind(regions: list[Region], wanted: str) -> list[Region]:
        return [r for r in regions if r.kind == wanted]

    def as_regions(boxes: list[tuple[float, ...]], what: str) -> list[Region]:
        out = []
        for x0, y0, x1, y1, _ in boxes:
            left, top = int(np.floor(x0)), int(np.floor(y0))
            out.append(Region(left, top, int(np.ceil(x1)) - left, int(np.ceil(y1)) - top, what))
        return out

    return {
        "centerface+plates (default)": (lambda im: as_regions(faces.find(im), "face"),
                                        lambda im: as_regions(plates.find(im), "plate")),
        "opencv (old default)": (lambda im: kind(cascade.detect(im), "face"),
                                 lambda im: kind(cascade.detect(im), "plate")),
    }


# --- sections -------------------------------------------------------------------------------


def evaluate(kind: str, composites: list[sets.Sample], real: list[sets.Sample],
             finder: Finder) -> tuple[Tally, Tally, float]:
    """(composite tally, real tally, false blurred fraction of Lund's pixels)."""
    backgrounds: dict[str, list[Region]] = {}
    comp = Tally()
    for sample in composites:
        key = sample.name.split("/", 1)[1]
        if key not in backgrounds:
            source = sets.shared_photo(*next(p for p in sets.BACKGROUNDS
                                              if "/".join(p[::2]) == key))
            backgrounds[key] = finder(source)
        regions = timed(finder, sample.image, comp)
        comp.add(sample, getattr(sample, kind), regions, backgrounds[key])
    real_tally = Tally()
    false_px = total_px = 0
    for sample in real:
        regions = timed(finder, sample.image, real_tally)
        if not sample.labelled:
            continue
        real_tally.add(sample, getattr(sample, kind), regions, [])
        if sample.name.startswith("lund/"):
            blurred = blurred_mask(regions, sample.image.size)
            allowed = box_mask(sample.faces + sample.plates + sample.ignore, sample.image.size)
            false_px += int((blurred & ~allowed).sum())
            total_px += sample.image.width * sample.image.height
    return comp, real_tally, false_px / max(1, total_px)


def faces_section(real: list[sets.Sample], quick: bool) -> list[str]:
    composites = sets.face_composites()
    lines = ["### Faces", "",
             f"Composites: the 22 faces of `{sets.FACE_PACKAGE}` (MIT) pasted into "
             f"{len(sets.BACKGROUNDS)} street photos (5 Lund, Berlin 02, both Sony) at each "
             "face height; real: the 34 shared photos (Lund's faces were blurred at the source: "
             "they are `ignore` boxes).", "",
             "| blurrer | 60 px | 30 px | 24 px | 16 px | ≥ 24 px (target ≥ 95 %) | "
             "precision (composites) | false detections on real photos | "
             "false blurred area, Lund (target < 1 %) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, (faces, _) in finders().items():
        if quick and "opencv" in name:
            continue
        comp, real_tally, false_area = evaluate("faces", composites, real, faces)
        cells = [pct(*comp.recall(f"{h} px")) for h in sets.FACE_HEIGHTS]
        at_least = comp.recall("60 px", "30 px", "24 px")
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | **{pct(*at_least)}** | {comp.precision()} | {real_tally.false} | "
                     f"{false_area * 100:.3f} % |")
    return lines


def plates_section(real: list[sets.Sample], quick: bool) -> list[str]:
    composites = sets.plate_composites()
    lines = ["### Licence plates", "",
             "Composites: rendered plates (EU white with a blue band, plain white, yellow rear, "
             "US-style two-to-one) on a bumper-coloured patch, tilted ±4°, slightly blurred, "
             f"6 per photo in the same {len(sets.BACKGROUNDS)} photos at each width; real: the "
             "one unblurred plate of Lund frame 17 (23 × 7 px).", "",
             "| blurrer | 120 px wide | 80 px wide | 50 px wide | all (target ≥ 80 %) | "
             "Lund 17 plate | precision (composites) | false detections on real photos | "
             "false blurred area, Lund |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, (_, plates) in finders().items():
        if quick and "opencv" in name:
            continue
        comp, real_tally, false_area = evaluate("plates", composites, real, plates)
        cells = [pct(*comp.recall(f"{w} px wide")) for w in sets.PLATE_WIDTHS]
        every = comp.recall(*(f"{w} px wide" for w in sets.PLATE_WIDTHS))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | **{pct(*every)}** | "
                     f"{pct(*real_tally.recall('real'))} | {comp.precision()} | "
                     f"{real_tally.false} | {false_area * 100:.3f} % |")
    return lines


def cost_section(quick: bool) -> list[str]:
    photos = [("Lund 1024 × 768", sets.shared_photo("opensfm_lund", "images", "07.jpg")),
              ("2048 × 1536 (Berlin 01 reduced)",
               sets.shared_photo("opensfm_berlin", "images", "01.jpg").resize((2048, 1536))),
              ("Berlin 3264 × 2448", sets.shared_photo("opensfm_berlin", "images", "01.jpg")),
              ("Sony 3840 × 2160",
               sets.shared_photo("mapillary_tools_samples", "images", "DSC00497.JPG"))]
    default = open_blurrer()
    assert isinstance(default, PrivacyBlurrer) and default.faces and default.plates
    cascade = CascadeBlurrer()
    lines = ["### Cost per photo", "",
             "CPU ms of one call, one thread (median of 3; the photo already decoded). "
             "CenterFace runs at the photo's full resolution (24-px faces) in equal tiles of "
             f"at most {PipelineSettings().blur_max_input_pixels:,} pixels overlapping by "
             "96 px, plus a pass over the photo reduced 4× when it is tiled.", "",
             "| photo | CenterFace | plate finder | default (both) | opencv (old) |",
             "|---|---:|---:|---:|---:|"]

    def ms(fn: Callable[[], object]) -> float:
        runs = []
        for _ in range(1 if quick else 3):
            started = time.process_time()
            fn()
            runs.append(time.process_time() - started)
        return float(np.median(runs)) * 1000

    for label, photo in photos:
        f = ms(lambda p=photo: default.faces.find(p))  # type: ignore[union-attr]
        p = ms(lambda p=photo: default.plates.find(p))  # type: ignore[union-attr]
        c = ms(lambda p=photo: cascade.detect(p))
        lines.append(f"| {label} | {f:,.0f} | {p:,.0f} | {f + p:,.0f} | {c:,.0f} |")
    return lines


def throughput_section(images: int, threads: int) -> list[str]:
    import pipeline as pipeline_bench  # bench/pipeline.py: the bench that measured 1.07/s
    from wayview.blobs import LocalBlobs
    from wayview.fixtures import make_jpeg
    from wayview.pipeline.process import ImageProcessor

    t0 = datetime(2024, 5, 1, 9, tzinfo=UTC)
    w, h = 2048, 1536
    synthetic = [(make_jpeg(width=w, height=h, lat=55.7, lon=13.19 + k * 1e-5,
                            captured_at=t0 + timedelta(seconds=k), compass_deg=90.0, seed=k),
                  w, h) for k in range(images)]
    real = []
    for parts in [("opensfm_berlin", "images", f"0{k}.jpg") for k in (1, 2, 3)] + [
            ("mapillary_tools_samples", "images", n) for n in ("DSC00001.JPG", "DSC00497.JPG")]:
        data = sets.SHARED.joinpath(*parts).read_bytes()
        with Image.open(sets.SHARED.joinpath(*parts)) as im:
            real += [(data, *im.size)] * 2

    def run(fn: Callable[[tuple[bytes, int, int]], object],
            items: list[tuple[bytes, int, int]]) -> tuple[float, float]:
        cpu = time.process_time()
        value = pipeline_bench.rate(fn, items, threads)
        return value, (time.process_time() - cpu) / len(items)

    rows = [("synthetic", "codec only (decode + encode the same outputs)",
             *run(lambda d: pipeline_bench.codec_only(d[0], w, h), synthetic))]
    with tempfile.TemporaryDirectory() as tmp:
        for label, blurrer in (("blurrer none", "none"),
                               ("blurrer opencv (old default)", "opencv"),
                               ("blurrer centerface+plates (new default)",
                                "centerface+plates")):
            settings = PipelineSettings(blurrer=blurrer, detectors="none")
            processor = ImageProcessor(settings, LocalBlobs(Path(tmp) / blurrer))
            processor.derive(1, *synthetic[0])  # warm-up: model loading is not per image
            for name, items in (("synthetic", synthetic), ("real", real)):
                counter = iter(range(1, 10**6))
                rows.append((name, f"pipeline, {label}", *run(
                    lambda item, p=processor, c=counter: p.derive(next(c), *item), items)))
    lines = ["### Throughput with blurring on", "",
             f"bench/pipeline.py's measurement in one run: *synthetic* = its {images} "
             f"generated {w} × {h} JPEGs with sensor-like noise (camera-sized files, the photos "
             "of the 1.07 images/s figure); *real* = the three Berlin (3264 × 2448) and two "
             "Sony (3840 × 2160) photos, each twice. `ImageProcessor.derive` on "
             f"{threads} threads, `pipeline.detectors = none` so that only the blurrer differs "
             "between rows. *CPU s/image* is the process's CPU time per image (all threads): "
             "unlike images/s it barely moves when other processes share the cores.", "",
             "| photos | stage | images/s | CPU s/image | vs opencv (CPU per image) |",
             "|---|---|---:|---:|---:|"]
    old = {name: cpu for name, label, _, cpu in rows if "opencv" in label}
    for name, label, value, cpu in rows:
        ratio = f"{old[name] / cpu:.2f} ×" if "pipeline" in label else ""
        lines.append(f"| {name} | {label} | {value:.2f} | {cpu:.3f} | {ratio} |")
    return lines


# The sections, in order; `signs` and `map features` live in bench/perception_signs.py.
SECTIONS = ("faces", "plates", "signs", "map features", "cost", "throughput")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-docs", action="store_true",
                        help="put the tables into docs/performance.md under 'Perception'")
    parser.add_argument("--images", type=int, default=24, help="photos for the throughput")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--quick", action="store_true", help="no opencv rows, one timing run")
    parser.add_argument("--only", choices=SECTIONS, action="append")
    args = parser.parse_args()
    wanted = args.only or [s for s in SECTIONS
                           if not (s == "throughput" and args.skip_throughput)]
    real = sets.real_samples()
    out = [f"Made by `python bench/perception.py --write-docs` (`--only SECTION` redoes one "
           f"section): {os.cpu_count()} cores ({platform.machine()}), Python "
           f"{platform.python_version()}, other load on the machine possible (CPU ms are "
           "process time, not wall time).", ""]
    for section in wanted:
        started = time.perf_counter()
        first = len(out)
        if section == "faces":
            out += faces_section(real, args.quick)
        elif section == "plates":
            out += plates_section(real, args.quick)
        elif section == "signs":
            out += perception_signs.signs_section()
        elif section == "map features":
            out += perception_signs.map_features_section()
        elif section == "cost":
            out += cost_section(args.quick)
        elif section == "throughput":
            out += throughput_section(args.images, args.threads)
        out[first + 2:first + 2] = [f"_Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC._", ""]
        out.append("")
        print(f"[{section}: {time.perf_counter() - started:.0f} s]", file=sys.stderr)
    text = "\n".join(out).rstrip() + "\n"
    print(text)
    if args.write_docs:
        write_docs(text)


def write_docs(text: str) -> None:
    """Put `text` into docs/performance.md: the whole block, or (when it holds only some
    sections) just those `### ` sections of the block, with the new "Measured" line."""
    doc = DOCS.read_text()
    if START not in doc:
        doc = doc.rstrip() + "\n\n## Perception (bench/perception.py)\n\n" + START + "\n" + END
    before, rest = doc.split(START, 1)
    old, after = rest.split(END, 1)
    old_parts = _sections(old)
    new_parts = _sections(text)
    merged = {**old_parts, **new_parts}
    body = "".join(merged[k] for k in merged)
    doc = before + START + "\n" + body.rstrip() + "\n" + END + after
    DOCS.write_text(doc)


def _sections(text: str) -> dict[str, str]:
    """"" → the lines before the first `### `, then each `### Title` → its section."""
    parts: dict[str, str] = {}
    key = ""
    for line in text.strip("\n").splitlines(keepends=True):
        if line.startswith("### "):
            key = line.strip()
        parts[key] = parts.get(key, "") + line
    return {k: v.rstrip("\n") + "\n\n" for k, v in parts.items()}


if __name__ == "__main__":
    main()
