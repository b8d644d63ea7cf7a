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
