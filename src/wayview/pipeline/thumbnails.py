"""wayview.pipeline.thumbnails: the JPEG derivatives of an image (thumb_256/1024/2048, §6.1)."""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Iterator

from PIL import Image as PILImage
from PIL import JpegImagePlugin, UnidentifiedImageError

from wayview.blobs.base import THUMB_WIDTHS
from wayview.errors import InvalidInput
from wayview.ingest.exif import iter_segments

__all__ = [
    "THUMBNAIL_QUALITY",
    "encode_jpeg",
    "jpeg_frame_size",
    "make_derivatives",
    "pillow_errors",
    "strip_metadata_segments",
]

#: JPEG quality of every thumbnail (libjpeg scale, 1–95).
THUMBNAIL_QUALITY = 85
#: Bicubic with a reducing gap of 2: a box reduction by the integer part of (scale / 2) first,
#: then bicubic. Visually equal to a full Lanczos at about 70 % of its cost on 12 MP photos.
_RESAMPLE = PILImage.Resampling.BICUBIC
_REDUCING_GAP = 2.0
_JPEG_FORMATS = ("JPEG",)  # MPO files open as their first frame once MPF is stripped
_ICC_ID = b"ICC_PROFILE\x00"
_ADOBE_ID = b"Adobe"


def strip_metadata_segments(data: bytes) -> bytes:
    """The JPEG without EXIF, XMP, MPF, comments and other application segments.

    Keeps what decoding needs or what changes colours: JFIF (APP0), ICC profiles (APP2
    `ICC_PROFILE`) and the Adobe colour-transform marker (APP14). Pillow then has no untrusted
    metadata to parse (no "corrupt EXIF" warnings, no MPO detection) and the thumbnails carry
    no location or camera data.
    """
    pieces: list[bytes] = [data[:2]]
    last = 2
    dropped = False
    for marker, start, end in iter_segments(data):
        segment_start = start - 4
        keep = not (0xE0 <= marker <= 0xEF or marker == 0xFE) or (
            marker == 0xE0
            or (marker == 0xE2 and data.startswith(_ICC_ID, start))
            or (marker == 0xEE and data.startswith(_ADOBE_ID, start))
        )
        if not keep:
            pieces.append(data[last:segment_start])
            last = end
            dropped = True
    if not dropped:
        return data
    pieces.append(data[last:])
    return b"".join(pieces)


def make_derivatives(data: bytes) -> dict[str, bytes]:
    """Every stored variant of a JPEG: the thumbnails and the untouched original.

    Each `thumb_<w>` is a baseline JPEG (quality `THUMBNAIL_QUALITY`, no metadata besides an ICC
    profile) scaled to width `w` keeping the aspect ratio, never upscaled: when the original is
    narrower, that thumbnail has the original's size. The stored pixel grid is kept (EXIF
    orientation is not applied; clients rotate by `exif_orientation`). The photo is decoded once,
    at the smallest DCT scale that still covers the largest thumbnail, and each thumbnail is
    resized from the next larger one.

    Args:
        data: the JPEG file.

    Returns:
        {"thumb_2048": …, "thumb_1024": …, "thumb_256": …, "original": data}.

    Raises:
        InvalidInput: the bytes are not a decodable JPEG ("corrupt image data: …").
    """
    with pillow_errors(), \
            PILImage.open(io.BytesIO(strip_metadata_segments(data)), formats=_JPEG_FORMATS) as im:
        width, height = im.size
        largest = min(max(THUMB_WIDTHS.values()), width)
        im.draft("RGB", (largest, _scaled_height(width, height, largest)))
        im.load()
        icc_profile = im.info.get("icc_profile")
        current = im if im.mode in ("RGB", "L") else im.convert("RGB")
        if current is not im:
            icc_profile = None  # the profile described the source colour space (CMYK)
        derivatives: dict[str, bytes] = {}
        for variant, thumb_width in sorted(THUMB_WIDTHS.items(), key=lambda kv: -kv[1]):
            target_width = min(thumb_width, width)
            size = (target_width, _scaled_height(width, height, target_width))
            if current.size != size:
                current = current.resize(size, _RESAMPLE, reducing_gap=_REDUCING_GAP)
            derivatives[variant] = _encode(current, icc_profile)
    derivatives["original"] = data
    return derivatives


def jpeg_frame_size(data: bytes) -> tuple[int, int]:
    """`(width, height)` of a JPEG as Pillow's decoder would allocate it, from the headers only
    (no pixel is decoded).

    Raises:
        InvalidInput: not a JPEG Pillow can open.
    """
    # The plugin class directly: `Image.open` would run Pillow's own bomb check first, whose
    # warning is an exception where warnings are errors.
    with pillow_errors(), \
            JpegImagePlugin.JpegImageFile(io.BytesIO(strip_metadata_segments(data))) as im:
        width, height = im.size
        return width, height


def _scaled_height(width: int, height: int, target_width: int) -> int:
    return max(1, round(height * target_width / width))


def _encode(image: PILImage.Image, icc_profile: bytes | None) -> bytes:
    return encode_jpeg(image, icc_profile, THUMBNAIL_QUALITY)


def encode_jpeg(image: PILImage.Image, icc_profile: bytes | None, quality: int) -> bytes:
    """A baseline JPEG of `image` at `quality`, carrying `icc_profile` when given."""
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": quality, "progressive": False}
    if icc_profile:
        options["icc_profile"] = icc_profile
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


@contextlib.contextmanager
def pillow_errors() -> Iterator[None]:
    """Turn Pillow's ways of reporting a bad JPEG into `InvalidInput` with a reason."""
    try:
        yield
    except UnidentifiedImageError as exc:
        raise InvalidInput("not a JPEG") from exc
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise InvalidInput("image too large") from exc
    # Pillow reports damaged or truncated data with any of these.
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise InvalidInput(f"corrupt image data: {exc}") from exc
