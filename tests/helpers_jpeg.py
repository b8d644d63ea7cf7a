"""tests.helpers_jpeg: small JPEGs with chosen EXIF/XMP/MAP* metadata, for the ingest tests only."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import piexif  # type: ignore[import-untyped]
from PIL import Image

GPANO_XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:GPano="http://ns.google.com/photos/1.0/panorama/" '
    b'GPano:ProjectionType="equirectangular" GPano:UsePanoramaViewer="True"/>'
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def _rational(value: float, denominator: int = 10_000) -> tuple[int, int]:
    fraction = Fraction(value).limit_denominator(denominator)
    return fraction.numerator, fraction.denominator


def _dms(value_deg: float) -> tuple[tuple[int, int], ...]:
    value = abs(value_deg)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return ((degrees, 1), (minutes, 1), (round(seconds * 10_000), 10_000))


def make_jpeg(
    *,
    width: int = 64,
    height: int = 48,
    lat: float | None = 55.7,
    lon: float | None = 13.2,
    captured_at: datetime | None = datetime(2024, 5, 14, 9, 30, 12, 345_000, tzinfo=UTC),
    heading_deg: float | None = 90.0,
    altitude_m: float | None = None,
    make: str | None = "TestMake",
    model: str | None = "TestModel",
    orientation: int | None = None,
    focal_35mm: int | None = None,
    gps_time: bool = False,
    xmp: bytes | None = None,
    gpano: bool = False,
    map_description: dict[str, Any] | None = None,
    description: bytes | None = None,
    color: tuple[int, int, int] = (90, 120, 160),
    quality: int = 90,
) -> bytes:
    """A JPEG with the given metadata; `None` leaves a tag out.

    `captured_at` goes to DateTimeOriginal (+ SubSecTimeOriginal, + OffsetTimeOriginal when it
    is timezone-aware); `gps_time=True` also writes GPSDateStamp/GPSTimeStamp in UTC.
    """
    zeroth: dict[int, Any] = {}
    exif: dict[int, Any] = {}
    gps: dict[int, Any] = {}
    if make is not None:
        zeroth[piexif.ImageIFD.Make] = make.encode()
    if model is not None:
        zeroth[piexif.ImageIFD.Model] = model.encode()
    if orientation is not None:
        zeroth[piexif.ImageIFD.Orientation] = orientation
    if map_description is not None:
        zeroth[piexif.ImageIFD.ImageDescription] = json.dumps(
            map_description, separators=(",", ":"), sort_keys=True
        ).encode()
    elif description is not None:
        zeroth[piexif.ImageIFD.ImageDescription] = description
    if captured_at is not None:
        exif[piexif.ExifIFD.DateTimeOriginal] = captured_at.strftime("%Y:%m:%d %H:%M:%S").encode()
        exif[piexif.ExifIFD.SubSecTimeOriginal] = f"{captured_at.microsecond // 1000:03d}".encode()
        offset = captured_at.utcoffset()
        if offset is not None:
            minutes = int(offset.total_seconds()) // 60
            sign = "-" if minutes < 0 else "+"
            text = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
            exif[piexif.ExifIFD.OffsetTimeOriginal] = text.encode()
        if gps_time:
            utc = captured_at.astimezone(UTC)
            gps[piexif.GPSIFD.GPSDateStamp] = utc.strftime("%Y:%m:%d").encode()
            gps[piexif.GPSIFD.GPSTimeStamp] = (
                (utc.hour, 1),
                (utc.minute, 1),
                (utc.second * 1000 + utc.microsecond // 1000, 1000),
            )
    if focal_35mm is not None:
        exif[piexif.ExifIFD.FocalLengthIn35mmFilm] = focal_35mm
    if lat is not None and lon is not None:
        gps[piexif.GPSIFD.GPSLatitudeRef] = b"N" if lat >= 0 else b"S"
        gps[piexif.GPSIFD.GPSLatitude] = _dms(lat)
        gps[piexif.GPSIFD.GPSLongitudeRef] = b"E" if lon >= 0 else b"W"
        gps[piexif.GPSIFD.GPSLongitude] = _dms(lon)
    if heading_deg is not None:
        gps[piexif.GPSIFD.GPSImgDirectionRef] = b"T"
        gps[piexif.GPSIFD.GPSImgDirection] = _rational(heading_deg, 100)
    if altitude_m is not None:
        gps[piexif.GPSIFD.GPSAltitudeRef] = 1 if altitude_m < 0 else 0
        gps[piexif.GPSIFD.GPSAltitude] = _rational(abs(altitude_m), 100)
    exif_bytes = piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps})
    buffer = io.BytesIO()
    image = Image.new("RGB", (width, height), color)
    options: dict[str, Any] = {"quality": quality, "exif": exif_bytes}
    packet = GPANO_XMP if gpano else xmp
    if packet is not None:
        options["xmp"] = packet
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def write_jpeg(path: Path, **kwargs: Any) -> Path:
    """Write `make_jpeg(**kwargs)` to `path` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_jpeg(**kwargs))
    return path


#: Start-of-frame markers whose header `patch_frame_size` rewrites (SOF0–SOF3, SOF5–SOF7,
#: SOF9–SOF11, SOF13–SOF15; not DHT 0xC4, JPG 0xC8, DAC 0xCC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def patch_frame_size(data: bytes, width: int, height: int) -> bytes:
    """`data` (a JPEG) with every frame header claiming `width` × `height` pixels.

    Only the 16-bit size fields of the SOFn segments change: the entropy-coded data stays the
    small image's, so the result is a "decompression bomb" (a tiny file that asks the decoder
    for a huge frame) when the new size is large.
    """
    if not (0 < width < 65536 and 0 < height < 65536):
        raise ValueError(f"a JPEG frame is at most 65535 pixels a side, not {width}×{height}")
    out = bytearray(data)
    pos = 2
    patched = 0
    while pos + 4 <= len(out) and out[pos] == 0xFF:
        marker = out[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: no SOF after this in a baseline file
            break
        length = (out[pos + 2] << 8) | out[pos + 3]
        if marker in _SOF_MARKERS:
            out[pos + 5 : pos + 7] = height.to_bytes(2, "big")
            out[pos + 7 : pos + 9] = width.to_bytes(2, "big")
            patched += 1
        pos += 2 + length
    if not patched:
        raise ValueError("no frame header found")
    return bytes(out)


def make_bomb(
    width: int = 13_300,
    height: int = 13_300,
    *,
    mode: str = "RGB",
    progressive: bool = False,
    exif: bool = True,
) -> bytes:
    """A tiny JPEG (about 1 kB) whose frame header claims `width` × `height` pixels.

    `mode` is the Pillow mode of the encoded image ("RGB", "L" or "CMYK"); `progressive`
    writes SOF2 instead of SOF0. With `exif` the file carries the GPS position and capture
    time of `make_jpeg`, so it passes every metadata check and only its size gives it away.
    """
    small = Image.new(mode, (16, 16), 0 if mode == "L" else (90, 120, 160, 0)[: len(mode)])
    buffer = io.BytesIO()
    options: dict[str, Any] = {"quality": 75, "progressive": progressive}
    if exif:
        options["exif"] = Image.open(io.BytesIO(make_jpeg(width=8, height=8))).info["exif"]
    small.save(buffer, "JPEG", **options)
    return patch_frame_size(buffer.getvalue(), width, height)


def make_plain_jpeg(width: int, height: int, *, mode: str = "L", **save: Any) -> bytes:
    """A uniformly coloured JPEG with `make_jpeg`'s metadata (the most compressible photo a
    camera could take: a lens cap or a grey wall), saved with Pillow options `save`."""
    exif_bytes = Image.open(io.BytesIO(make_jpeg(width=8, height=8))).info["exif"]
    image = Image.new(mode, (width, height), 128 if mode == "L" else (128,) * len(mode))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif_bytes, **save)
    return buffer.getvalue()


def make_scan_bomb(width: int = 2000, height: int = 1500, *, repeats: int = 200) -> bytes:
    """A progressive JPEG (`make_plain_jpeg`) whose last scan is repeated `repeats` times: a
    valid-looking file of a plausible size whose decoding makes one pass over the whole image
    per scan (48 MP with 1,000 scans: 260 kB, 27 s of CPU)."""
    data = make_plain_jpeg(width, height, mode="L", progressive=True, optimize=True)
    start = data.rindex(b"\xff\xda")
    end = len(data) - 2  # the last scan runs up to EOI
    return data[:end] + data[start:end] * repeats + data[end:]
