"""wayview.pipeline.pyramid: the image pyramid MapillaryJS tiles an image with (§3.12).

Notation of §3.12: an image is `W × H` pixels, `max = ceil(log2(max(W, H)))`, level `z` has the
scale `s = 2^(z − max)` and tiles of `T = 1024 / s` source pixels. Level `z` is a grid of
`ceil(W·s / 1024) × ceil(H·s / 1024)` tiles; tile `(x, y)` shows source pixels
`[x·T, y·T]`–`[min((x+1)·T, W), min((y+1)·T, H)]`, scaled by `min(s, 1)` (never upscaled).

All the arithmetic here is exact integer arithmetic (`s` and `T` are powers of two), so the
grids agree with MapillaryJS's floating-point `src/tile/TileMath.ts` for every size.

>>> max_level(4000, 3000), grid(4000, 3000, 12), grid(4000, 3000, 11), grid(4000, 3000, 0)
(12, (4, 3), (2, 2), (1, 1))
>>> stored_levels(4000, 3000), stored_levels(640, 480)
([11, 12], [11])
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from PIL import Image as PILImage

from wayview.pipeline.thumbnails import encode_jpeg, pillow_errors, strip_metadata_segments

__all__ = [
    "MIN_REQUEST_LEVEL",
    "TILE_QUALITY",
    "TILE_SIZE",
    "grid",
    "level_size",
    "levels",
    "max_level",
    "render_level",
    "render_pyramid",
    "stored_levels",
    "tile_box",
]

#: Edge of a full tile in output pixels (MapillaryJS `TILE_SIZE`).
TILE_SIZE = 1024
#: log2(TILE_SIZE).
_TILE_BITS = 10
#: The lowest level MapillaryJS requests (`TILE_MIN_REQUEST_LEVEL`); it asks it even when
#: `max_level` is smaller.
MIN_REQUEST_LEVEL = 11
#: JPEG quality of every tile (libjpeg scale, as the thumbnails).
TILE_QUALITY = 85
_JPEG_FORMATS = ("JPEG",)


def max_level(width: int, height: int) -> int:
    """`ceil(log2(max(width, height)))`: the level at which the image is shown unscaled.

    >>> max_level(1, 1), max_level(2, 1), max_level(1024, 768), max_level(1025, 10)
    (0, 1, 10, 11)
    >>> max_level(0, 5)
    Traceback (most recent call last):
    ...
    ValueError: image size must be positive, got 0×5
    """
    _check_size(width, height)
    return (max(width, height) - 1).bit_length()


def levels(width: int, height: int) -> range:
    """The valid levels of the image: `0 ≤ z ≤ max(max_level, 11)` (others are E9).

    >>> levels(4000, 3000), levels(640, 480)
    (range(0, 13), range(0, 12))
    """
    return range(max(max_level(width, height), MIN_REQUEST_LEVEL) + 1)


def grid(width: int, height: int, z: int) -> tuple[int, int]:
    """`(columns, rows)` of level `z`: `(ceil(W·s / 1024), ceil(H·s / 1024))`, each at least 1.

    >>> grid(4000, 3000, 12), grid(2500, 1300, 11), grid(2500, 1300, 12)
    ((4, 3), (2, 1), (3, 2))
    >>> grid(600, 400, 10), grid(600, 400, 11)  # z > max: finer grid, T = 512 source pixels
    ((1, 1), (2, 1))
    >>> grid(1, 1, 11)  # T = 1/2: four tiles over a single pixel, as MapillaryJS computes
    (2, 2)
    >>> grid(4000, 3000, 13)
    Traceback (most recent call last):
    ...
    ValueError: level 13 is outside 0..12 for a 4000×3000 image
    """
    shift = _check_level(width, height, z) - _TILE_BITS  # W·s/1024 = W·2^shift
    return _ceil_shift(width, shift), _ceil_shift(height, shift)


def level_size(width: int, height: int, z: int) -> tuple[int, int]:
    """Size of the whole image scaled for level `z`: `ceil(W·min(s, 1)) × ceil(H·min(s, 1))`.

    Tiles of levels below `max_level` are 1024-pixel crops of this image; at and above
    `max_level` it is the source itself. Rounding up keeps the rightmost column and bottom row
    non-empty, and `ceil(ceil(W/2^a)/2^b) = ceil(W/2^(a+b))` lets a level be reduced from any
    larger one (and from a JPEG decoded at a DCT scale of 1/2, 1/4 or 1/8, which rounds up too).

    >>> level_size(4000, 3000, 11), level_size(4001, 2999, 10), level_size(600, 400, 11)
    ((2000, 1500), (1001, 750), (600, 400))
    """
    shift = min(_check_level(width, height, z), 0)
    return _ceil_shift(width, shift), _ceil_shift(height, shift)


def stored_levels(width: int, height: int) -> list[int]:
    """The levels we render at ingest: the ones MapillaryJS can request, `11 ≤ z ≤ max(max, 11)`.

    No two levels share tiles. Below `max_level` each level halves the previous one. At and
    above it nothing is scaled (`min(s, 1) = 1`), but the tiles still differ: a tile covers
    `T = 1024 / s` source pixels, so every level above `max_level` has a twice finer grid of
    half-size crops. That only matters for small images (`max_level < 11`), whose single
    requested level 11 is a grid of `2^(max − 1)`-pixel crops (e.g. 512-pixel tiles for a
    1000-pixel image). Levels below 11 are valid API levels that MapillaryJS never asks for;
    they are not stored (`render_level` can make them on demand).

    >>> stored_levels(4000, 3000), stored_levels(8000, 4000), stored_levels(2048, 1536)
    ([11, 12], [11, 12, 13], [11])
    >>> stored_levels(1000, 750)
    [11]
    """
    return list(range(MIN_REQUEST_LEVEL, levels(width, height).stop))


def tile_box(
    width: int, height: int, z: int, x: int, y: int
) -> tuple[int, int, int, int, int, int]:
    """`(left, top, right, bottom, out_width, out_height)` of tile `(z, x, y)`, in pixels.

    The box is the source rectangle `[x·T, y·T]`–`[min((x+1)·T, W), min((y+1)·T, H)]`; `T` is a
    whole number of pixels for every valid level of every image except a 1×1 image at level 11
    (`T = 1/2`), whose four tiles each show the one pixel. The boxes of a level partition the
    image exactly. The output size is the box scaled by `min(s, 1)`: 1024 inside the grid and
    `level_size − 1024·x` (rounded up) in the last column/row, so stitching a level's tiles
    gives exactly `level_size`.

    >>> tile_box(2500, 1300, 12, 2, 1)  # z = max: 1024-pixel crops, unscaled
    (2048, 1024, 2500, 1300, 452, 276)
    >>> tile_box(2500, 1300, 11, 1, 0)  # s = 1/2: 2048-pixel crops shown at half size
    (2048, 0, 2500, 1300, 226, 650)
    >>> tile_box(600, 400, 11, 1, 0)  # z > max: 512-pixel crops, not upscaled
    (512, 0, 600, 400, 88, 400)
    >>> tile_box(2500, 1300, 12, 3, 0)
    Traceback (most recent call last):
    ...
    ValueError: tile (12, 3, 0) is outside the 3×2 grid
    """
    columns, rows = grid(width, height, z)
    if not (0 <= x < columns and 0 <= y < rows):
        raise ValueError(f"tile ({z}, {x}, {y}) is outside the {columns}×{rows} grid")
    bits = max_level(width, height) + _TILE_BITS - z  # T = 2^bits
    if bits < 0:  # T < 1: a 1×1 image at level 11; each tile shows the one pixel
        return 0, 0, 1, 1, 1, 1
    left, top = x << bits, y << bits
    right, bottom = min(left + (1 << bits), width), min(top + (1 << bits), height)
    level_left, level_top, level_right, level_bottom = _level_box(width, height, z, x, y)
    return left, top, right, bottom, level_right - level_left, level_bottom - level_top


def render_level(image: PILImage.Image, z: int) -> Iterator[tuple[int, int, bytes]]:
    """Every tile `(x, y, jpeg)` of level `z` of a full-size image, row by row.

    The image is scaled once for the level (`level_size`, a box-filter reduction by the
    power of two `2^(max − z)`) and the tiles are crops of it. Images that are neither RGB nor
    greyscale are converted to RGB first. The JPEGs are baseline, quality `TILE_QUALITY`.

    Raises:
        ValueError: `z` is not a valid level of the image.
    """
    width, height = image.size
    _check_level(width, height, z)
    source = image if image.mode in ("RGB", "L") else image.convert("RGB")
    icc_profile = image.info.get("icc_profile") if source is image else None
    level_image = _reduce_to(source, level_size(width, height, z))
    yield from _crop_level(level_image, width, height, z, icc_profile)


def render_pyramid(jpeg: bytes, levels: Iterable[int]) -> Iterator[tuple[int, int, int, bytes]]:
    """Every tile `(z, x, y, jpeg)` of the given levels of a JPEG, largest level first.

    The JPEG is decoded once, at the smallest DCT scale (1, 1/2, 1/4, 1/8) that still covers the
    largest requested level, and each level is reduced from the previous (larger) one. Metadata
    is dropped as for the thumbnails, an ICC profile is kept, and the EXIF orientation is not
    applied (clients rotate by `exif_orientation`).

    Args:
        jpeg: the original JPEG file.
        levels: the levels to render (typically `stored_levels(width, height)`); duplicates are
            rendered once.

    Raises:
        InvalidInput: the bytes are not a decodable JPEG.
        ValueError: a level is not valid for the image's size (raised before any tile).
    """
    wanted = sorted(set(levels), reverse=True)
    with _open_jpeg(jpeg) as im:
        width, height = im.size
        for z in wanted:
            _check_level(width, height, z)
        if not wanted:
            return
        current, icc_profile = _load(im, level_size(width, height, wanted[0]))
        for z in wanted:
            current = _reduce_to(current, level_size(width, height, z))
            for x, y, tile in _crop_level(current, width, height, z, icc_profile):
                yield z, x, y, tile


def _open_jpeg(jpeg: bytes) -> PILImage.Image:
    """The JPEG without its metadata segments, opened lazily (only the header is parsed)."""
    with pillow_errors():
        return PILImage.open(io.BytesIO(strip_metadata_segments(jpeg)), formats=_JPEG_FORMATS)


def _load(im: PILImage.Image, size: tuple[int, int]) -> tuple[PILImage.Image, bytes | None]:
    """Decode at the smallest DCT scale covering `size`; RGB or greyscale, and its ICC profile."""
    with pillow_errors():
        im.draft("RGB", size)
        im.load()
    icc_profile = im.info.get("icc_profile")
    if im.mode in ("RGB", "L"):
        return im, icc_profile
    return im.convert("RGB"), None  # the profile described the source colour space (CMYK)


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}×{height}")


def _check_level(width: int, height: int, z: int) -> int:
    """Validate `z` and return `z − max_level` (log2 of `s`)."""
    top = max_level(width, height)
    if not 0 <= z <= max(top, MIN_REQUEST_LEVEL):
        raise ValueError(
            f"level {z} is outside 0..{max(top, MIN_REQUEST_LEVEL)} for a {width}×{height} image"
        )
    return z - top


def _ceil_shift(n: int, shift: int) -> int:
    """`ceil(n · 2^shift)` for a positive integer `n`."""
    return n << shift if shift >= 0 else -(-n >> -shift)


def _level_box(width: int, height: int, z: int, x: int, y: int) -> tuple[int, int, int, int]:
    """The crop box of tile `(x, y)` in the level image (`level_size`)."""
    bits = max_level(width, height) + _TILE_BITS - z
    level_width, level_height = level_size(width, height, z)
    if bits < 0:
        return 0, 0, 1, 1
    step = 1 << min(bits, _TILE_BITS)  # T source pixels at and above max, else 1024
    left, top = x * step, y * step
    return left, top, min(left + step, level_width), min(top + step, level_height)


def _reduce_to(image: PILImage.Image, size: tuple[int, int]) -> PILImage.Image:
    """Reduce by the power of two that turns `image` into `size` (both are `ceil` sizes)."""
    if image.size == size:
        return image
    factor = 1
    while _ceil_div(image.width, factor) > size[0] or _ceil_div(image.height, factor) > size[1]:
        factor *= 2
    if (_ceil_div(image.width, factor), _ceil_div(image.height, factor)) != size:
        raise ValueError(f"cannot reduce {image.size} to {size} by a power of two")
    return image.reduce(factor)


def _ceil_div(n: int, d: int) -> int:
    return -(-n // d)


def _crop_level(
    level_image: PILImage.Image, width: int, height: int, z: int, icc_profile: bytes | None
) -> Iterator[tuple[int, int, bytes]]:
    columns, rows = grid(width, height, z)
    for y in range(rows):
        for x in range(columns):
            box = _level_box(width, height, z, x, y)
            yield x, y, _encode(level_image.crop(box), icc_profile)


def _encode(image: PILImage.Image, icc_profile: bytes | None) -> bytes:
    return encode_jpeg(image, icc_profile, TILE_QUALITY)
