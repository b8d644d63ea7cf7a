"""bench.importbench: `wayview import` throughput next to the bare JPEG codec cost.

The photos are 4000×3000 synthetic street scenes with EXIF GPS/time (`wayview.fixtures.make_jpeg`),
one every 5 m along a street, 2 s apart, so the importer cuts them into one sequence. "Codec only"
is what no importer can avoid: decode with Pillow (DCT draft to the smallest scale covering 2048 px),
resize bicubic with a reducing gap of 2 to 2048, then 1024, then 256 px (each from the previous),
encode JPEG quality 85 — the same library and steps as `wayview.pipeline.thumbnails`, without
metadata stripping, hashing, EXIF parsing, blob writes or database rows. Files are read into
memory before the clock starts. It runs once on one thread and once on one thread per core
(Pillow releases the GIL while decoding, resizing and encoding).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

WIDTH, HEIGHT = 4000, 3000
THUMB_WIDTHS = (2048, 1024, 256)
QUALITY = 85


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Images per second of each way of processing the folder."""

    images: int
    codec_1_ips: float
    codec_n_ips: float
    threads: int
    import_ips: float | None
    import_wall_s: float | None
    cli_startup_s: float | None
    import_note: str
    other_cores: float = 0.0


def ensure_jpegs(folder: Path, count: int, log: Any = print) -> list[Path]:
    """`count` 4000×3000 JPEGs in `folder` (made once, reused when the marker matches)."""
    marker = folder.parent / f"{folder.name}.json"  # outside: the importer walks the folder
    files = [folder / f"IMG_{k:04d}.jpg" for k in range(count)]
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        meta = None
    if meta == {"count": count, "width": WIDTH, "height": HEIGHT} and all(
            f.exists() for f in files):
        return files
    from wayview.fixtures import make_jpeg

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    t0 = datetime(2024, 5, 4, 10, 0, 0, tzinfo=UTC)
    for k, path in enumerate(files):
        lat = 52.5 + k * 5 / 111_320  # 5 m apart, heading north
        path.write_bytes(make_jpeg(width=WIDTH, height=HEIGHT, lat=lat, lon=13.4,
                                   captured_at=t0 + timedelta(seconds=2 * k), compass_deg=0.0,
                                   altitude_m=40.0, seed=k, label=f"bench {k}"))
    marker.write_text(json.dumps({"count": count, "width": WIDTH, "height": HEIGHT}))
    log(f"made {count} JPEGs of {WIDTH}×{HEIGHT} in {time.perf_counter() - started:.1f} s")
    return files


def codec_once(data: bytes) -> int:
    """Decode, make the three widths, encode; returns the bytes written."""
    written = 0
    with PILImage.open(io.BytesIO(data)) as im:
        w, h = im.size
        largest = min(THUMB_WIDTHS[0], w)
        im.draft("RGB", (largest, round(h * largest / w)))
        im.load()
        current: PILImage.Image = im
        for tw in THUMB_WIDTHS:
            tw = min(tw, w)
            size = (tw, max(1, round(h * tw / w)))
            if current.size != size:
                current = current.resize(size, PILImage.Resampling.BICUBIC, reducing_gap=2.0)
            buf = io.BytesIO()
            current.save(buf, "JPEG", quality=QUALITY, progressive=False)
            written += buf.tell()
    return written


def codec_ips(blobs: list[bytes], threads: int) -> float:
    """Codec-only images per second on `threads` threads."""
    started = time.perf_counter()
    if threads == 1:
        for b in blobs:
            codec_once(b)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(codec_once, blobs))
    return len(blobs) / (time.perf_counter() - started)


def importer_available() -> bool:
    """Whether `wayview import` exists in this checkout."""
    proc = subprocess.run([sys.executable, "-m", "wayview", "import", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode == 0


def _wayview(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYVIEW_")}
    return subprocess.run([sys.executable, "-m", "wayview", *args], capture_output=True,
                          text=True, timeout=timeout, check=False, env=env)


def run_import(folder: Path, count: int) -> tuple[float, float, str]:
    """(wall seconds of `wayview import`, CLI start-up seconds, summary) on a fresh data dir."""
    with tempfile.TemporaryDirectory(prefix="wayview-import-bench-") as tmp:
        data = Path(tmp) / "data"
        made = _wayview("users", "create", "bench", "--data-dir", str(data), "--json")
        if made.returncode != 0:
            raise RuntimeError(f"users create failed: {made.stderr}")
        started = time.perf_counter()
        _wayview("--version")
        startup = time.perf_counter() - started
        started = time.perf_counter()
        proc = _wayview("import", str(folder), "--user", "bench", "--data-dir", str(data),
                        "--json")
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"wayview import failed ({proc.returncode}): "
                               f"{proc.stderr[-2000:]}\n{proc.stdout[-2000:]}")
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        stored = _count_stored(data)
        if stored is not None and stored != count:
            raise RuntimeError(f"import stored {stored} images, expected {count}: {summary}")
        return wall, startup, summary


def _count_stored(data: Path) -> int | None:
    import sqlite3

    db = data / "wayview.db"
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    finally:
        conn.close()


def measure(folder: Path, count: int, log: Any = print, retries: int = 2) -> ImportResult:
    """Make (or reuse) the photos, time codec-only on 1 and N threads, then `wayview import`.

    Each timing waits for a quiet machine and is repeated when other processes were busy
    (bench/cpumeter.py).
    """
    from cpumeter import CpuMeter

    meter = CpuMeter()
    files = ensure_jpegs(folder, count, log)
    blobs = [f.read_bytes() for f in files]
    threads = os.cpu_count() or 1
    codec_once(blobs[0])  # warm Pillow up
    c1, cpu1 = meter.measure(lambda: codec_ips(blobs, 1), retries=retries, log=log)
    cn, cpun = (meter.measure(lambda: codec_ips(blobs, threads), retries=retries, log=log)
                if threads > 1 else (c1, cpu1))
    log(f"codec only: {c1:.2f} images/s on 1 thread, {cn:.2f} on {threads} "
        f"(other load {cpu1['other_cores']:.2f} / {cpun['other_cores']:.2f} cores)")
    if not importer_available():
        return ImportResult(count, c1, cn, threads, None, None, None,
                            "`wayview import` is not available in this checkout",
                            max(cpu1["other_cores"], cpun["other_cores"]))
    (wall, startup, summary), cpui = meter.measure(lambda: run_import(folder, count),
                                                   retries=retries, log=log)
    log(f"wayview import: {count} images in {wall:.1f} s ({count / wall:.2f} images/s); "
        f"CLI start-up {startup:.2f} s; other load {cpui['other_cores']:.2f} cores; "
        f"{summary[:200]}")
    return ImportResult(count, c1, cn, threads, count / wall, wall, startup, summary,
                        max(cpu1["other_cores"], cpun["other_cores"], cpui["other_cores"]))
