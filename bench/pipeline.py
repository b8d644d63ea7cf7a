"""bench/pipeline.py: per-image processing throughput against the codec-only cost, in one run.

    python bench/pipeline.py [--images 24] [--width 2048] [--height 1536] [--threads 2]

Generates `--images` synthetic street JPEGs (wayview.fixtures.make_jpeg) and measures, with
`--threads` worker threads each:

- *codec only*: decode the JPEG once and encode the thumbnails and the pyramid tiles with
  Pillow at the same sizes, with nothing else (the floor any pipeline pays);
- *pipeline, no blur*: `ImageProcessor.derive` with `pipeline.blurrer = none` (metadata
  stripping, thumbnails, pyramid, blob writes);
- *pipeline, opencv blur*: the same with the Haar-cascade blurrer (the default before `centerface+plates`; bench/perception.py compares the two).

Prints images/s and the pipeline's share of the codec-only rate (issue target: ≥ 60 %).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from wayview.blobs import LocalBlobs  # noqa: E402
from wayview.blobs.base import THUMB_WIDTHS  # noqa: E402
from wayview.fixtures import make_jpeg  # noqa: E402
from wayview.pipeline.process import ImageProcessor  # noqa: E402
from wayview.pipeline.pyramid import grid, stored_levels, tile_box  # noqa: E402
from wayview.settings import PipelineSettings  # noqa: E402


def codec_only(data: bytes, width: int, height: int) -> None:
    """Decode once; encode every output the pipeline writes, at the same sizes."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        for target in sorted(THUMB_WIDTHS.values(), reverse=True):
            w = min(target, width)
            im.resize((w, max(1, round(height * w / width)))).save(io.BytesIO(), "JPEG",
                                                                   quality=85)
        for z in stored_levels(width, height):
            columns, rows = grid(width, height, z)
            for y in range(rows):
                for x in range(columns):
                    left, top, right, bottom, ow, oh = tile_box(width, height, z, x, y)
                    tile = im.crop((left, top, right, bottom))
                    if tile.size != (ow, oh):
                        tile = tile.resize((ow, oh))
                    tile.save(io.BytesIO(), "JPEG", quality=85)


def rate(fn, items, threads: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, items))
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    t0 = datetime(2024, 5, 1, 9, tzinfo=UTC)
    photos = [make_jpeg(width=args.width, height=args.height, lat=55.7, lon=13.19 + k * 1e-5,
                        captured_at=t0 + timedelta(seconds=k), compass_deg=90.0, seed=k)
              for k in range(args.images)]
    w, h = args.width, args.height
    rows = [("codec only (decode + encode the same outputs)",
             rate(lambda d: codec_only(d, w, h), photos, args.threads))]
    with tempfile.TemporaryDirectory() as tmp:
        for label, blurrer in (("pipeline, blurrer none", "none"),
                               ("pipeline, blurrer opencv", "opencv")):
            processor = ImageProcessor(PipelineSettings(blurrer=blurrer),
                                       LocalBlobs(Path(tmp) / blurrer))
            items = list(enumerate(photos, start=1))
            rows.append((label, rate(lambda kv, p=processor: p.derive(kv[0], kv[1], w, h),
                                     items, args.threads)))
    base = rows[0][1]
    print(f"{args.images} images of {w}x{h}, {args.threads} threads\n")
    print(f"| {'stage':<46} | images/s | vs codec only |")
    print(f"| {'-' * 46} | -------: | ------------: |")
    for label, value in rows:
        print(f"| {label:<46} | {value:8.2f} | {value / base * 100:12.0f} % |")


if __name__ == "__main__":
    main()
