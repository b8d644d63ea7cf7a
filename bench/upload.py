"""bench/upload.py: upload throughput against a plain loopback copy, and processing throughput
against the codec-only cost, in one run (issue #5).

    python bench/upload.py [--images 200] [--width 2048] [--height 1536] [--parallel 1,4]
                           [--noise 4]

1. Generates `--images` synthetic street JPEGs (wayview.fixtures.make_jpeg, with EXIF and the
   MAP* description mapillary_tools sends), with `--noise` so they are camera-sized.
2. **Baseline**: a plain loopback copy of the same bytes: a bare TCP server that writes each
   file to disk and fsyncs it before answering (what any durable upload must at least cost),
   one connection per file as HTTP/1.1 clients without keep-alive pay, with `P` clients.
3. **wayview**: a real `wayview serve` (granian, one process, no job runner so processing does
   not compete) receiving the same files as mapillary_tools 0.14 sends them: one upload
   session per image (`POST /upload/{key}` with `Offset: 0`, user token), then the zip form
   (one session, the whole zip in one POST). Reported as MB/s and as a share of the baseline
   (issue target: ≥ 60 %).
4. **Processing**: `ImageProcessor.derive` images/s against the codec-only floor (the same
   measurement as bench/pipeline.py, on the first 24 images).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.pipeline import codec_only, rate  # noqa: E402

from wayview.blobs import LocalBlobs  # noqa: E402
from wayview.fixtures import build_map_description, make_jpeg  # noqa: E402
from wayview.pipeline.process import ImageProcessor  # noqa: E402
from wayview.settings import PipelineSettings  # noqa: E402

MB = 1_000_000


def photos(count: int, width: int, height: int, noise: float = 0.0) -> list[bytes]:
    """Synthetic street photos with EXIF; `noise` (σ of Gaussian pixel noise) makes them
    compress like camera JPEGs (the smooth synthetic scenes are ~6× smaller)."""
    t0 = datetime(2024, 5, 1, 9, tzinfo=UTC)

    def one(k: int) -> bytes:
        lat, lon, at = 55.7, 13.19 + k * 3e-5, t0 + timedelta(seconds=k)
        desc = build_map_description(lat=lat, lon=lon, captured_at=at, compass_deg=90.0,
                                     make="BenchCam", model="B-1")
        data = make_jpeg(width=width, height=height, lat=lat, lon=lon, captured_at=at,
                         compass_deg=90.0, make="BenchCam", model="B-1",
                         map_description=desc, seed=k)
        if not noise:
            return data
        with Image.open(io.BytesIO(data)) as im:
            exif = im.info["exif"]
            pixels = np.asarray(im, dtype=np.float32)
        rng = np.random.default_rng(k)
        pixels += rng.normal(0.0, noise, pixels.shape).astype(np.float32)
        out = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            out, "JPEG", quality=90, exif=exif)
        return out.getvalue()

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(one, range(count)))


# -- baseline: a plain loopback copy ----------------------------------------------------------


class _CopyHandler(socketserver.StreamRequestHandler):
    """Reads `<length>\\n<bytes>`, writes them to a new file, fsyncs, answers b"k"."""

    def handle(self) -> None:
        length = int(self.rfile.readline())
        folder: Path = self.server.folder  # type: ignore[attr-defined]
        fd, name = tempfile.mkstemp(dir=folder)
        with os.fdopen(fd, "wb") as fh:
            remaining = length
            while remaining:
                chunk = self.rfile.read(min(remaining, 256 * 1024))
                if not chunk:
                    raise ConnectionError("short body")
                fh.write(chunk)
                remaining -= len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        self.wfile.write(b"k")


class _CopyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def copy_server(folder: Path) -> Iterator[int]:
    server = _CopyServer(("127.0.0.1", 0), _CopyHandler)
    server.folder = folder  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def copy_one(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"{len(data)}\n".encode() + data)
        if sock.recv(1) != b"k":
            raise ConnectionError("copy server did not confirm")


# -- wayview ---------------------------------------------------------------------------------


def wayview(*args: str, data_dir: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "wayview", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, check=True, env=_env())
    return done.stdout


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYVIEW_")}
    env.update(extra)
    return env


@contextlib.contextmanager
def live_server(data_dir: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    log = open(data_dir.parent / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "wayview", "serve", "--data-dir", str(data_dir), "--host",
         "127.0.0.1", "--port", str(port), "--public-base-url", base],
        stdout=log, stderr=subprocess.STDOUT,
        env=_env(WAYVIEW_JOBS__SERVE_WORKERS="0", WAYVIEW_LOG_LEVEL="warning"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"wayview serve did not start; see {log.name}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


class RawHttp:
    """A minimal keep-alive HTTP/1.1 client on one socket, so the client's own CPU cost stays
    close to the copy baseline's (httpx or requests cost ~0.5 ms per request here)."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, int(port)))
        self.reader = self.sock.makefile("rb")

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}",
                 f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        status = self.reader.readline()
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        answer = self.reader.read(length)
        if b" 200 " not in status:
            raise RuntimeError(f"{status!r} {answer[:200]!r}")
        return answer

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def upload_images(base: str, token: str, files: list[bytes], parallel: int, tag: str) -> None:
    headers = {"Authorization": f"OAuth {token}", "Offset": "0"}
    local = threading.local()
    clients: list[RawHttp] = []

    def one(item: tuple[int, bytes]) -> None:
        k, data = item
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = RawHttp(base)
            clients.append(client)
        client.post(f"/upload/mly_tools_{tag}_{k}.jpg", data, headers)

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, enumerate(files)))
    for client in clients:
        client.close()


def timed(fn: object, *args: object) -> float:
    """Wall seconds of `fn(*args)`, starting with no dirty pages (an fsync on ext4 may also
    flush what earlier phases left in the page cache, which would bias the later phase)."""
    os.sync()
    started = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--parallel", default="1,4", help="client concurrencies to measure")
    parser.add_argument("--noise", type=float, default=4.0,
                        help="pixel noise σ, so files are camera-sized (0 = smooth scenes)")
    parser.add_argument("--process-images", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2, help="processing threads")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (median shown)")
    args = parser.parse_args()
    levels = [int(p) for p in args.parallel.split(",")]

    print(f"generating {args.images} JPEGs of {args.width}x{args.height} ...", file=sys.stderr)
    files = photos(args.images, args.width, args.height, args.noise)
    total = sum(map(len, files))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as zf:
        for k, data in enumerate(files):
            zf.writestr(f"{k}.jpg", data)
    zip_bytes = zipped.getvalue()

    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="wayview-bench-upload-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        wayview("users", "create", "bench", data_dir=data_dir)
        token_out = wayview("tokens", "create", "--user", "bench", "--json", data_dir=data_dir)
        token = __import__("json").loads(token_out.strip().splitlines()[-1])["access_token"]
        with live_server(data_dir) as base:
            def copy_run(parallel: int, run: int) -> float:
                sink = root / f"copy-{parallel}-{run}"
                sink.mkdir()
                with copy_server(sink) as port, ThreadPoolExecutor(parallel) as pool:
                    return timed(lambda: list(pool.map(lambda d: copy_one(port, d), files)))

            def zip_copy_run(run: int) -> float:
                sink = root / f"copy-zip-{run}"
                sink.mkdir()
                with copy_server(sink) as port:
                    return timed(copy_one, port, zip_bytes)

            def zip_upload_run(run: int) -> float:
                http = RawHttp(base)
                try:
                    return timed(http.post, f"/upload/mly_tools_bench_{run}.zip", zip_bytes,
                                 {"Authorization": f"OAuth {token}", "Offset": "0"})
                finally:
                    http.close()

            # Baseline and wayview alternate, `--repeat` times each; medians are reported
            # (a single 100 MB fsync varies by 2x from run to run on this VM).
            for parallel in levels:
                base_s, up_s = [], []
                for run in range(args.repeat):
                    base_s.append(copy_run(parallel, run))
                    up_s.append(timed(upload_images, base, token, files, parallel,
                                      f"p{parallel}r{run}"))
                baseline = total / statistics.median(base_s) / MB
                mbps = total / statistics.median(up_s) / MB
                rows.append((f"loopback copy + fsync, {parallel} client(s)", baseline, 100.0))
                rows.append((f"wayview POST /upload per image, {parallel} client(s)", mbps,
                             mbps / baseline * 100))
            zip_base_s, zip_s = [], []
            for run in range(args.repeat):
                zip_base_s.append(zip_copy_run(run))
                zip_s.append(zip_upload_run(run))
            zip_base = len(zip_bytes) / statistics.median(zip_base_s) / MB
            zip_mbps = len(zip_bytes) / statistics.median(zip_s) / MB
            rows.append(("loopback copy + fsync, one zip", zip_base, 100.0))
            rows.append(("wayview POST /upload, one zip", zip_mbps, zip_mbps / zip_base * 100))

        sample = files[: args.process_images]
        w, h = args.width, args.height
        codec = rate(lambda d: codec_only(d, w, h), sample, args.threads)
        processor = ImageProcessor(PipelineSettings(blurrer="none"), LocalBlobs(root / "blobs"))
        items = list(enumerate(sample, start=1))
        derived = rate(lambda kv: processor.derive(kv[0], kv[1], w, h), items, args.threads)

    print(f"\n{args.images} images, {total / MB:.1f} MB ({total / args.images / 1000:.0f} KB "
          f"each), {os.cpu_count()} cores, median of {args.repeat} alternating runs, load "
          f"average {os.getloadavg()[0]:.2f}\n")
    print(f"| {'upload':<50} |   MB/s | vs copy |")
    print(f"| {'-' * 50} | -----: | ------: |")
    for label, value, share in rows:
        print(f"| {label:<50} | {value:6.1f} | {share:5.0f} % |")
    print(f"\n| {'processing (' + str(args.threads) + ' threads)':<50} | img/s | vs codec |")
    print(f"| {'-' * 50} | ----: | -------: |")
    print(f"| {'codec only (decode + encode the same outputs)':<50} | {codec:5.2f} |   100 % |")
    print(f"| {'pipeline, blurrer none':<50} | {derived:5.2f} | "
          f"{derived / codec * 100:6.0f} % |")


if __name__ == "__main__":
    main()
