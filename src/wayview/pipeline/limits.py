"""wayview.pipeline.limits: what an image may claim before anything decodes it (issue #14).

A JPEG's frame header states its size, and a decoder allocates for that size before it reads
a single pixel: a 1 kB file that claims 13,300 × 13,300 pixels (a "decompression bomb") costs
gigabytes of memory and seconds of CPU. `check_frame` refuses such files from their header
alone, before decoding, with a reason for the per-file report:

- **pixel limit** (`pipeline.max_image_pixels`): width × height above it is refused. It bounds
  the memory of every later stage (docs/deployment.md, "Memory").
- **plausibility** (`pipeline.min_bytes_per_megapixel`): a real photo needs bytes for its
  pixels. Camera JPEGs take 100,000–500,000 bytes per megapixel; the most compressible JPEG
  Pillow writes, a uniformly grey frame with optimised Huffman tables, about 3,900 (RGB 5,900).
  The default floor of 1,000 is four times below that, and a bomb of 1 kB for 177 MP has 6.

- **scans** (`pipeline.max_jpeg_scans`): a progressive JPEG is decoded scan by scan, each a
  pass over every block of the image, so a small file repeating a scan a thousand times costs
  a thousand passes; `check_scans` counts the start-of-scan markers (entropy-coded data never
  contains one: a 0xFF byte there is always followed by 0x00 or a restart number).

Accepted images are decoded at full size for the pyramid's top level, so the memory of one
image grows with its pixels (about 7.5 bytes per pixel for a baseline RGB photo, up to 14 for
a progressive CMYK one). `pixel_budget` caps the pixels being processed at once in a process at
`pipeline.max_image_pixels`, however many threads run the pipeline: many small photos go in
parallel, one image of the largest size goes alone.

Pillow has a bomb check of its own (`PIL.Image.MAX_IMAGE_PIXELS`: a warning above it, an
error above twice it). `allow_pillow_pixels` raises it to the configured limit, so an accepted
image never warns; its `DecompressionBombError` is still turned into `InvalidInput`
(`pillow_errors`) should anything reach it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
from collections.abc import Callable, Iterator

from PIL import Image as PILImage

from wayview.errors import InvalidInput

__all__ = [
    "PixelBudget",
    "allow_pillow_pixels",
    "check_frame",
    "check_scans",
    "pixel_budget",
    "release_memory",
]

_PILLOW_LOCK = threading.Lock()
_BUDGETS: dict[int, PixelBudget] = {}


def check_frame(width: int, height: int, nbytes: int, *, max_pixels: int,
                min_bytes_per_megapixel: int) -> None:
    """Refuse a frame of `width` × `height` pixels stored in `nbytes` bytes when it is larger
    than `max_pixels` or implausibly small for its size.

    >>> check_frame(4000, 3000, 3_000_000, max_pixels=100_000_000, min_bytes_per_megapixel=1000)
    >>> check_frame(13300, 13300, 1100, max_pixels=100_000_000, min_bytes_per_megapixel=1000)
    Traceback (most recent call last):
    ...
    wayview.errors.InvalidInput: image too large: 13300×13300 pixels (176.9 MP, at most 100.0 MP)
    >>> check_frame(8000, 6000, 1100, max_pixels=10**8, min_bytes_per_megapixel=1000)
    Traceback (most recent call last):
    ...
    wayview.errors.InvalidInput: implausible image: 1100 bytes for 8000×6000 pixels (...)

    Raises:
        InvalidInput: with the reason.
    """
    if width < 1 or height < 1:
        raise InvalidInput("corrupt JPEG: empty frame")
    pixels = width * height
    if pixels > max_pixels:
        raise InvalidInput(
            f"image too large: {width}×{height} pixels ({pixels / 1e6:.1f} MP, at most "
            f"{max_pixels / 1e6:.1f} MP)")
    expected = pixels * min_bytes_per_megapixel // 1_000_000
    if nbytes < expected:
        raise InvalidInput(
            f"implausible image: {nbytes} bytes for {width}×{height} pixels "
            f"(at least {expected} expected)")


def check_scans(data: bytes, max_scans: int) -> None:
    """Refuse a JPEG with more than `max_scans` start-of-scan markers (0xFFDA) in all.

    >>> check_scans(bytes.fromhex("ffd8" + "ffda0008" * 3 + "ffd9"), 3)
    >>> check_scans(bytes.fromhex("ffd8" + "ffda0008" * 4 + "ffd9"), 3)
    Traceback (most recent call last):
    ...
    wayview.errors.InvalidInput: implausible image: 4 scans (at most 3)

    Raises:
        InvalidInput: with the reason.
    """
    scans = data.count(b"\xff\xda")
    if scans > max_scans:
        raise InvalidInput(f"implausible image: {scans} scans (at most {max_scans})")


def allow_pillow_pixels(max_pixels: int) -> None:
    """Make Pillow's own bomb warning start above `max_pixels` (it only ever goes up, so
    several configurations in one process never lower each other's limit)."""
    with _PILLOW_LOCK:
        current = PILImage.MAX_IMAGE_PIXELS
        if current is not None and current < max_pixels:
            PILImage.MAX_IMAGE_PIXELS = max_pixels
    fix_mmap_threshold()


#: glibc's `mallopt` parameter for the size from which allocations are mmapped.
_M_MMAP_THRESHOLD = -3
#: Allocations of this size and up (Pillow's 16 MB image blocks, decoder buffers) are mmapped.
MMAP_THRESHOLD_BYTES = 1 << 20
_MMAP_FIXED: list[bool] = []


def fix_mmap_threshold() -> None:
    """Pin glibc's mmap threshold at `MMAP_THRESHOLD_BYTES` (once per process; glibc only).

    By default glibc raises the threshold to the size of each large block it frees (up to
    32 MB), after which image buffers come from per-thread arenas that keep them. Two pipeline
    threads then each keep the peak of the other's images, and the peak RSS of the same import
    varied from 750 MB to 1.2 GB with the load on the machine. Pinned, every large buffer is
    an mmap that goes back to the system when it is freed.
    """
    with _PILLOW_LOCK:
        if _MMAP_FIXED:
            return
        _MMAP_FIXED.append(True)
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


class PixelBudget:
    """A semaphore counted in pixels, shared by the threads of one process.

    `hold(n)` waits until `n` pixels (at most the capacity) are free, so the images decoded
    at the same time never add up to more than `capacity` pixels.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, not {capacity}")
        self.capacity = capacity
        self._free = capacity
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Reserve `pixels` (clamped to 1..capacity) for the `with` block."""
        wanted = min(max(1, pixels), self.capacity)
        with self._changed:
            while self._free < wanted:
                self._changed.wait()
            self._free -= wanted
        try:
            yield
        finally:
            with self._changed:
                self._free += wanted
                self._changed.notify_all()

    @property
    def free(self) -> int:
        """Pixels not reserved right now."""
        with self._changed:
            return self._free


def pixel_budget(capacity: int) -> PixelBudget:
    """The process-wide budget of `capacity` pixels (one per capacity, so every pipeline of
    one configuration in this process shares it)."""
    with _PILLOW_LOCK:
        budget = _BUDGETS.get(capacity)
        if budget is None:
            budget = _BUDGETS[capacity] = PixelBudget(capacity)
        return budget


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)
    return trim


_MALLOC_TRIM: list[Callable[[int], int] | None] = []


def release_memory() -> None:
    """Hand the memory freed by a decode back to the operating system (glibc only).

    glibc keeps freed memory in the arena of the thread that freed it; with a pool of threads
    each decoding large images in turn, every arena grows to the largest image it saw, so a
    process would hold several images' worth of freed memory. `malloc_trim(0)` returns it.
    """
    with _PILLOW_LOCK:
        if not _MALLOC_TRIM:
            _MALLOC_TRIM.append(_load_malloc_trim())
        trim = _MALLOC_TRIM[0]
    if trim is not None:
        trim(0)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: `VmHWM` of /proc/self/status on Linux.

    Not `ru_maxrss`: Linux carries the high-water mark of the memory a process had before
    `execve` into it, so a process started by a large one (a test worker, a server that
    spawns workers) reports its parent's peak: a 13 MB child of a 1.5 GB parent says 1.5 GB.
    Elsewhere `ru_maxrss` is what there is.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
