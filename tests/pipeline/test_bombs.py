"""Decompression bombs (issue #14, item 3): tiny JPEGs whose frame header claims a huge frame are
refused from their header, with a reason, before anything decodes them; real and very
compressible photos still pass; the memory of processing the largest accepted image is bounded."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, JpegImagePlugin
from tests.conftest import shared_path
from tests.helpers_jpeg import (
    make_bomb,
    make_jpeg,
    make_plain_jpeg,
    make_scan_bomb,
    patch_frame_size,
)

from wayview.blobs import LocalBlobs
from wayview.errors import InvalidInput
from wayview.ingest.importer import import_paths
from wayview.pipeline.process import ImageProcessor
from wayview.pipeline.thumbnails import jpeg_frame_size, make_derivatives
from wayview.settings import PipelineSettings
from wayview.testing import make_settings, open_test_store

REPO = Path(__file__).resolve().parents[2]

BOMBS = {
    "baseline-rgb.jpg": {},
    "progressive-rgb.jpg": {"progressive": True},
    "baseline-cmyk.jpg": {"mode": "CMYK"},
    "progressive-cmyk.jpg": {"mode": "CMYK", "progressive": True},
    "baseline-grey.jpg": {"mode": "L"},
    "progressive-grey.jpg": {"mode": "L", "progressive": True},
}


def write_bomb_set(folder: Path) -> dict[str, str]:
    """The bomb set in `folder`: file name → the start of the reason it must be refused with."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    for name, options in BOMBS.items():
        (folder / f"huge-{name}").write_bytes(make_bomb(13_300, 13_300, **options))
        expected[f"huge-{name}"] = "image too large"
        # Under the pixel limit but 1 kB for 48 MP: implausible.
        (folder / f"dense-{name}").write_bytes(make_bomb(8000, 6000, **options))
        expected[f"dense-{name}"] = "implausible image"
    # A plausible size, but each of its 206 scans is a pass over the whole image.
    (folder / "many-scans.jpg").write_bytes(make_scan_bomb())
    expected["many-scans.jpg"] = "implausible image: 206 scans"
    # The largest frame a JPEG can state.
    (folder / "max-frame.jpg").write_bytes(make_bomb(65_535, 65_535))
    expected["max-frame.jpg"] = "image too large"
    # PNG is not accepted at all, bomb or not (checked by its magic bytes, nothing decoded).
    png = io.BytesIO()
    Image.new("L", (16, 16)).save(png, "PNG")
    data = bytearray(png.getvalue())
    data[16:24] = (60_000).to_bytes(4, "big") + (60_000).to_bytes(4, "big")  # IHDR size
    (folder / "huge.png").write_bytes(bytes(data))
    expected["huge.png"] = "not a JPEG"
    (folder / "png-named.jpg").write_bytes(bytes(data))
    expected["png-named.jpg"] = "not a JPEG"
    return expected


def test_bomb_fixtures_claim_what_they_should() -> None:
    bomb = make_bomb(13_300, 13_300, mode="CMYK", progressive=True)
    assert len(bomb) < 2000
    assert jpeg_frame_size(bomb) == (13_300, 13_300)
    with JpegImagePlugin.JpegImageFile(io.BytesIO(make_bomb(progressive=True))) as im:
        assert im.info.get("progressive") and im.size == (13_300, 13_300)
    assert jpeg_frame_size(patch_frame_size(make_jpeg(), 100, 50)) == (100, 50)


async def test_import_refuses_every_bomb_with_a_reason_before_decoding(tmp_path: Path) -> None:
    folder = tmp_path / "bombs"
    expected = write_bomb_set(folder)
    settings = make_settings(tmp_path)
    async with open_test_store(settings) as store:
        await store.create_user("alice")
        started = time.perf_counter()
        report = await import_paths(store, LocalBlobs(settings.blobs_path), settings, [folder],
                                    username="alice")
        elapsed = time.perf_counter() - started
    reasons = {s.path.name: s.reason for s in report.skipped}
    assert report.imported == 0 and set(reasons) == set(expected)
    for name, reason in reasons.items():
        assert reason.startswith(expected[name]), (name, reason)
    # Refused from the header: no decode (one would take seconds and gigabytes each).
    assert elapsed < 0.2 * len(expected), elapsed
    assert not list(settings.blobs_path.rglob("*.jpg"))


async def test_import_takes_real_and_very_compressible_photos(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("DSC00001.JPG",):
        (folder / name).write_bytes(
            shared_path("data", "mapillary_tools_samples", "images", name).read_bytes())
    (folder / "lund.jpg").write_bytes(
        shared_path("data", "opensfm_lund", "images", "07.jpg").read_bytes())
    # A lens cap or a grey wall: the most compressible JPEGs Pillow writes.
    (folder / "grey-optimized.jpg").write_bytes(
        make_plain_jpeg(4000, 3000, mode="L", optimize=True, progressive=True))
    (folder / "grey-rgb.jpg").write_bytes(make_plain_jpeg(4000, 3000, mode="RGB", optimize=True))
    (folder / "black-default.jpg").write_bytes(make_plain_jpeg(4000, 3000, mode="RGB"))
    settings = make_settings(tmp_path, pipeline={"blurrer": "none", "pyramid": False})
    async with open_test_store(settings) as store:
        await store.create_user("alice")
        report = await import_paths(store, LocalBlobs(settings.blobs_path), settings, [folder],
                                    username="alice", max_time_gap_s=1e9,
                                    max_distance_gap_m=1e9)
    assert report.skipped == ()
    assert report.imported == 5


async def test_the_pixel_limit_is_a_setting(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(make_jpeg(width=300, height=200))
    settings = make_settings(tmp_path, pipeline={"blurrer": "none", "max_image_pixels": 50_000})
    async with open_test_store(settings) as store:
        await store.create_user("alice")
        report = await import_paths(store, LocalBlobs(settings.blobs_path), settings, [folder],
                                    username="alice")
    [skipped] = report.skipped
    assert skipped.reason == "image too large: 300×200 pixels (0.1 MP, at most 0.1 MP)"


def test_the_pipeline_checks_the_frame_the_decoder_sees(tmp_path: Path) -> None:
    """A second frame header (the decoder reads the last one) cannot sneak a bomb past the size
    the metadata reader took from the first one; nor can a caller's stale size."""
    processor = ImageProcessor(PipelineSettings(blurrer="none"), LocalBlobs(tmp_path))
    small = make_jpeg(width=64, height=48)
    sof = small.index(b"\xff\xc0")
    length = int.from_bytes(small[sof + 2 : sof + 4], "big")
    segment = patch_frame_size(b"\xff\xd8" + small[sof : sof + 2 + length], 13_300, 13_300)[2:]
    two_frames = small[: sof + 2 + length] + segment + small[sof + 2 + length :]
    with pytest.raises(InvalidInput, match="frame headers disagree"):
        processor.derive(1, two_frames, 64, 48)
    with pytest.raises(InvalidInput, match="image too large"):
        processor.derive(1, make_bomb(), 13_300, 13_300)
    with pytest.raises(InvalidInput, match="implausible image"):
        processor.derive(1, make_bomb(4000, 3000), 4000, 3000)
    with pytest.raises(InvalidInput, match="implausible image: 206 scans"):
        processor.derive(1, make_scan_bomb(), 2000, 1500)
    assert not list(tmp_path.rglob("*.jpg"))


def test_pillow_bomb_errors_are_invalid_input_never_a_crash() -> None:
    # Whatever reaches Pillow's own check directly is a reason, not an exception of Pillow.
    with pytest.raises(InvalidInput, match="image too large"):
        make_derivatives(make_bomb(65_535, 65_535))


def test_thumbnails_of_a_large_photo_decode_reduced() -> None:
    """A 2048-px thumbnail of a 48 MP photo decodes at a DCT scale of 1/2, not full size."""
    data = make_plain_jpeg(8000, 6000, mode="RGB")
    script = (
        "import sys\n"
        "from wayview.pipeline.limits import peak_rss_mb\n"
        "from wayview.pipeline.thumbnails import make_derivatives\n"
        "from tests.helpers_jpeg import make_plain_jpeg\n"
        "data = sys.stdin.buffer.read()\n"
        "make_derivatives(make_plain_jpeg(2048, 1536, mode='RGB'))  # code and buffers warm\n"
        "before = peak_rss_mb()\n"
        "make_derivatives(data)\n"
        "print(int(peak_rss_mb() - before))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True,
                          check=True, cwd=REPO, timeout=120)
    grown_mb = int(done.stdout)
    assert grown_mb < 8000 * 6000 * 3 / 2**20 / 2, grown_mb  # a full decode is 137 MB


def test_blur_detection_of_a_large_photo_decodes_reduced() -> None:
    """The cascades look at a 1,600-pixel copy: a 48 MP photo with nothing to blur is decoded
    at 1/4 scale (it used to be decoded in full and copied: 275 MB). Measured after a photo of
    the size the cascades see: their buffers for it (~225 MB, kept per thread) are not the
    decode's."""
    data = make_plain_jpeg(8000, 6000, mode="RGB")
    script = (
        "import sys\n"
        "from wayview.pipeline.limits import peak_rss_mb\n"
        "from tests.helpers_jpeg import make_plain_jpeg\n"
        "from wayview.pipeline.blur import CascadeBlurrer, blur_jpeg\n"
        "data = sys.stdin.buffer.read()\n"
        "blurrer = CascadeBlurrer()\n"
        "# Loads the cascades and sizes their buffers for the 1,600-pixel copy they look at.\n"
        "blur_jpeg(make_plain_jpeg(1600, 1200, mode='RGB'), blurrer)\n"
        "before = peak_rss_mb()\n"
        "out, regions = blur_jpeg(data, blurrer)\n"
        "assert out is data and regions == []\n"
        "print(int(peak_rss_mb() - before))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True,
                          check=True, cwd=REPO, timeout=120)
    grown_mb = int(done.stdout)
    assert grown_mb < 8000 * 6000 * 3 / 2**20 / 2, grown_mb


#: Documented bound (docs/deployment.md, "Memory"): a process's peak RSS while processing is at
#: most its baseline (about 150 MB, plus up to 250 MB per pipeline thread: its OpenCV
#: cascades, the sign detector's working arrays and what the thread holds of its images
#: outside the decode budget; the import pool has one thread per CPU) plus 16 bytes per pixel
#: of `pipeline.max_image_pixels`. The same run peaks at 750 MB alone and up to 1.2 GB when
#: the rest of the suite loads both cores (how the two threads' work overlaps).
BASE_MB = 200 + 250 * (os.cpu_count() or 1)
BYTES_PER_LIMIT_PIXEL = 16

_RSS_SCRIPT = """
import asyncio, json, sys, time
from pathlib import Path
from wayview.pipeline.limits import peak_rss_mb
from wayview.blobs import LocalBlobs
from wayview.ingest.importer import import_paths
from wayview.testing import make_settings, open_test_store

async def main(root, max_pixels):
    settings = make_settings(root, pipeline={"blurrer": "opencv",
                                             "max_image_pixels": max_pixels})
    async with open_test_store(settings) as store:
        await store.create_user("alice")
        started = time.perf_counter()
        report = await import_paths(store, LocalBlobs(settings.blobs_path), settings,
                                    [root / "set"], username="alice", max_time_gap_s=1e9,
                                    max_distance_gap_m=1e9)
    return report, time.perf_counter() - started

report, elapsed = asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
print(json.dumps({"imported": report.imported, "elapsed_s": elapsed,
                  "skipped": {s.path.name: s.reason for s in report.skipped},
                  "peak_mb": int(peak_rss_mb())}))
"""

_LARGEST_SCRIPT = """
import sys
from pathlib import Path
from tests.helpers_jpeg import make_plain_jpeg
folder, width, height = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for name, mode, options in [("rgb-baseline", "RGB", {}),
                            ("rgb-progressive", "RGB", {"progressive": True}),
                            ("cmyk-progressive", "CMYK", {"progressive": True}),
                            ("grey-progressive", "L", {"progressive": True})]:
    (folder / f"largest-{name}.jpg").write_bytes(
        make_plain_jpeg(width, height, mode=mode, optimize=True, **options))
"""


@pytest.mark.timeout(600)
def test_peak_rss_of_the_bomb_set_and_the_largest_images_stays_bounded(tmp_path: Path) -> None:
    """The bomb set and the largest accepted image in every layout (baseline, progressive;
    RGB, CMYK, greyscale), imported in a fresh process with the blurrer on: the bombs are
    refused, the large images imported, and the process's peak RSS stays under the bound."""
    max_pixels = 40_000_000  # the bound scales with the limit; 40 MP keeps the test short
    width, height = 8944, 4472  # 2:1 panorama, just under the limit
    folder = tmp_path / "set"
    expected = write_bomb_set(folder)
    subprocess.run([sys.executable, "-c", _LARGEST_SCRIPT, str(folder), str(width),
                    str(height)], check=True, cwd=REPO, timeout=300)
    done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(tmp_path), str(max_pixels)],
                          capture_output=True, text=True, cwd=REPO, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["imported"] == 4, result
    assert set(result["skipped"]) == set(expected), result
    bound_mb = BASE_MB + BYTES_PER_LIMIT_PIXEL * max_pixels / 2**20
    print(f"peak RSS {result['peak_mb']} MB (bound {bound_mb:.0f} MB), "
          f"{result['elapsed_s']:.1f} s")
    assert result["peak_mb"] < bound_mb, result
