"""wayview.fixtures: synthetic street-scene JPEGs with real EXIF/XMP, for the demo and the tests.

`make_jpeg` draws a cheap "street scene" (sky gradient, building blocks, a road in perspective,
optional overlays and a text label) and writes the metadata a camera or mapillary_tools would:

- EXIF GPS (latitude, longitude, altitude, image direction, UTC date/time stamps),
- `DateTimeOriginal` + `SubSecTimeOriginal` + `OffsetTimeOriginal` (local time of `captured_at`),
- `Make`, `Model`, `Orientation`, `FocalLengthIn35mmFilm`,
- optionally a mapillary_tools `ImageDescription` JSON (spec §8.5) in IFD0 tag 0x010E,
- optionally a GPano XMP packet (equirectangular panorama) in its own APP1 segment after the EXIF.

Everything is deterministic for the same arguments. A 1024×768 image takes a few milliseconds.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import piexif
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

__all__ = [
    "XMP_HEADER",
    "Overlay",
    "build_map_description",
    "extract_xmp",
    "gpano_xmp",
    "make_jpeg",
    "map_capture_time",
    "write_jpeg",
]

#: The APP1 identifier of an XMP packet (Adobe XMP specification part 3, §1.1.3).
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_EXIF_HEADER = b"Exif\x00\x00"
_APP1 = 0xE1
_SOS = 0xDA
_HORIZON_FRACTION = 0.52  # horizon height as a fraction of the image height
_RGB = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Overlay:
    """A filled polygon drawn over the scene, in normalised image coordinates.

    `ring` holds (u, v) pairs in 0..1, origin top-left, y down (the Detection convention).
    """

    ring: tuple[tuple[float, float], ...]
    fill_rgb: _RGB
    outline_rgb: _RGB = (20, 20, 20)


# -- metadata --------------------------------------------------------------------------------


def map_capture_time(captured_at: datetime) -> str:
    """mapillary_tools' `MAPCaptureTime`: UTC `YYYY_MM_DD_HH_MM_SS_fff`.

    >>> from datetime import timezone, timedelta
    >>> map_capture_time(datetime(2021, 5, 1, 12, 0, 4, 500_000, timezone(timedelta(hours=2))))
    '2021_05_01_10_00_04_500'
    """
    utc = _require_aware(captured_at).astimezone(UTC)
    return utc.strftime("%Y_%m_%d_%H_%M_%S_") + f"{utc.microsecond // 1000:03d}"


def build_map_description(
    *,
    lat: float,
    lon: float,
    captured_at: datetime,
    compass_deg: float | None = None,
    altitude_m: float | None = None,
    make: str | None = None,
    model: str | None = None,
    orientation: int = 1,
    filename: str | None = None,
) -> dict[str, Any]:
    """The mapillary_tools ImageDescription object for these values (spec §8.5).

    >>> d = build_map_description(lat=55.7, lon=13.19, captured_at=datetime(2024, 5, 1, tzinfo=UTC))
    >>> d["MAPCaptureTime"], d["MAPLatitude"]
    ('2024_05_01_00_00_00_000', 55.7)
    """
    desc: dict[str, Any] = {
        "MAPLatitude": round(lat, 7),
        "MAPLongitude": round(lon, 7),
        "MAPCaptureTime": map_capture_time(captured_at),
        "MAPOrientation": orientation,
    }
    if altitude_m is not None:
        desc["MAPAltitude"] = round(altitude_m, 3)
    if compass_deg is not None:
        heading = round(compass_deg % 360.0, 3)
        desc["MAPCompassHeading"] = {"TrueHeading": heading, "MagneticHeading": heading}
    if make is not None:
        desc["MAPDeviceMake"] = make
    if model is not None:
        desc["MAPDeviceModel"] = model
    if filename is not None:
        desc["MAPFilename"] = filename
    return desc


def gpano_xmp(*, width: int, height: int, heading_deg: float | None = None) -> bytes:
    """A GPano XMP packet describing a full equirectangular panorama of `width`×`height`."""
    heading = (
        "" if heading_deg is None else f'\n    GPano:PoseHeadingDegrees="{heading_deg % 360:.1f}"'
    )
    packet = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="wayview.fixtures">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:GPano="http://ns.google.com/photos/1.0/panorama/"
    GPano:ProjectionType="equirectangular"
    GPano:UsePanoramaViewer="True"
    GPano:FullPanoWidthPixels="{width}"
    GPano:FullPanoHeightPixels="{height}"
    GPano:CroppedAreaImageWidthPixels="{width}"
    GPano:CroppedAreaImageHeightPixels="{height}"
    GPano:CroppedAreaLeftPixels="0"
    GPano:CroppedAreaTopPixels="0"{heading}/>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""
    return packet.encode("utf-8")


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("captured_at must be timezone-aware")
    return value


def _dms(value_deg: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Degrees as EXIF degree/minute/second rationals (seconds to 1e-6)."""
    micro_arcsec = round(abs(value_deg) * 3600 * 1_000_000)
    degrees, rest = divmod(micro_arcsec, 3600 * 1_000_000)
    minutes, micro_sec = divmod(rest, 60 * 1_000_000)
    return ((degrees, 1), (minutes, 1), (micro_sec, 1_000_000))


def _utc_offset_text(captured_at: datetime) -> str:
    offset = captured_at.utcoffset() or timedelta(0)
    total_min = int(offset.total_seconds() // 60)
    sign = "+" if total_min >= 0 else "-"
    hours, minutes = divmod(abs(total_min), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _exif_bytes(
    *,
    width: int,
    height: int,
    lat: float,
    lon: float,
    captured_at: datetime,
    compass_deg: float | None,
    altitude_m: float | None,
    make: str,
    model: str,
    orientation: int,
    map_description: Mapping[str, Any] | None,
    focal_35mm: int | None,
) -> bytes:
    utc = captured_at.astimezone(UTC)
    millis = captured_at.microsecond // 1000
    zeroth: dict[int, Any] = {
        piexif.ImageIFD.Make: make.encode(),
        piexif.ImageIFD.Model: model.encode(),
        piexif.ImageIFD.Orientation: orientation,
        piexif.ImageIFD.Software: b"wayview.fixtures",
    }
    if map_description is not None:
        text = json.dumps(dict(map_description), sort_keys=True, separators=(",", ":"))
        zeroth[piexif.ImageIFD.ImageDescription] = text.encode("ascii")
    local_text = captured_at.strftime("%Y:%m:%d %H:%M:%S").encode()
    exif: dict[int, Any] = {
        piexif.ExifIFD.DateTimeOriginal: local_text,
        piexif.ExifIFD.DateTimeDigitized: local_text,
        piexif.ExifIFD.SubSecTimeOriginal: f"{millis:03d}".encode(),
        piexif.ExifIFD.OffsetTimeOriginal: _utc_offset_text(captured_at).encode(),
        piexif.ExifIFD.PixelXDimension: width,
        piexif.ExifIFD.PixelYDimension: height,
    }
    if focal_35mm is not None:
        exif[piexif.ExifIFD.FocalLengthIn35mmFilm] = focal_35mm
    gps: dict[int, Any] = {
        piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
        piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
        piexif.GPSIFD.GPSLatitude: _dms(lat),
        piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
        piexif.GPSIFD.GPSLongitude: _dms(lon),
        piexif.GPSIFD.GPSDateStamp: utc.strftime("%Y:%m:%d").encode(),
        piexif.GPSIFD.GPSTimeStamp: (
            (utc.hour, 1),
            (utc.minute, 1),
            (utc.second * 1000 + utc.microsecond // 1000, 1000),
        ),
    }
    if altitude_m is not None:
        gps[piexif.GPSIFD.GPSAltitudeRef] = 0 if altitude_m >= 0 else 1
        gps[piexif.GPSIFD.GPSAltitude] = (round(abs(altitude_m) * 1000), 1000)
    if compass_deg is not None:
        gps[piexif.GPSIFD.GPSImgDirectionRef] = b"T"
        gps[piexif.GPSIFD.GPSImgDirection] = (round((compass_deg % 360.0) * 100) % 36000, 100)
    return bytes(piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps}))


def _segments_end(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment before the scan data of a JPEG."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    out: list[tuple[int, int, int]] = []
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"bad JPEG marker at offset {pos}")
        marker = data[pos + 1]
        if marker == _SOS:
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append((marker, pos, pos + 2 + length))
        pos += 2 + length
    return out


def _insert_xmp(data: bytes, packet: bytes) -> bytes:
    """Insert an XMP APP1 segment after the EXIF APP1 (or after SOI/APP0 without one)."""
    payload = XMP_HEADER + packet
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("XMP packet too large for one APP1 segment")
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    insert_at = 2
    for marker, start, end in _segments_end(data):
        if marker == _APP1 and data[start + 4 : start + 10] == _EXIF_HEADER:
            insert_at = end
            break
        if marker == 0xE0:  # keep JFIF APP0 first
            insert_at = end
    return data[:insert_at] + segment + data[insert_at:]


def extract_xmp(data: bytes) -> bytes | None:
    """The XMP packet of a JPEG (the first XMP APP1 segment), or None."""
    for marker, start, end in _segments_end(data):
        payload = data[start + 4 : end]
        if marker == _APP1 and payload.startswith(XMP_HEADER):
            return payload[len(XMP_HEADER) :]
    return None


# -- pixels ----------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size_px)


@lru_cache(maxsize=4)
def _background(width: int, height: int) -> bytes:
    """Sky and ground gradients (cached per size: only the buildings and road vary)."""
    horizon = int(height * _HORIZON_FRACTION)
    t_sky = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    sky = (1 - t_sky) * np.array([70, 125, 205], np.float32) + t_sky * np.array(
        [200, 222, 242], np.float32
    )
    t_ground = np.linspace(0.0, 1.0, height - horizon, dtype=np.float32)[:, None]
    ground = (1 - t_ground) * np.array([120, 128, 105], np.float32) + t_ground * np.array(
        [85, 100, 70], np.float32
    )
    column = np.concatenate([sky, ground]).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(column[:, None, :], (height, width, 3))).tobytes()


def _position_rng(seed: int | None, lat: float, lon: float, cell_deg: float) -> np.random.Generator:
    key = f"{seed}:{round(lat / cell_deg)}:{round(lon / cell_deg)}".encode()
    return np.random.default_rng(zlib.crc32(key))


def _draw_road(draw: ImageDraw.ImageDraw, centre_x: float, width: int, height: int) -> None:
    horizon = height * _HORIZON_FRACTION
    half_bottom = width * 0.45
    half_top = width * 0.02
    draw.polygon(
        [
            (centre_x - half_top, horizon),
            (centre_x + half_top, horizon),
            (centre_x + half_bottom, height),
            (centre_x - half_bottom, height),
        ],
        fill=(68, 68, 74),
    )
    # dashed centre line: short trapezoids growing towards the viewer
    for k in range(6):
        v0 = horizon + (height - horizon) * (0.08 + 0.16 * k) ** 1.4
        v1 = horizon + (height - horizon) * (0.15 + 0.16 * k) ** 1.4
        if v0 >= height:
            break
        w0 = 1 + (v0 - horizon) / (height - horizon) * width * 0.012
        w1 = 1 + (min(v1, height) - horizon) / (height - horizon) * width * 0.012
        draw.polygon(
            [(centre_x - w0, v0), (centre_x + w0, v0), (centre_x + w1, v1), (centre_x - w1, v1)],
            fill=(235, 235, 225),
        )


def _scene(
    *,
    width: int,
    height: int,
    lat: float,
    lon: float,
    seed: int | None,
    pano: bool,
    label: str | None,
    overlays: Sequence[Overlay],
) -> PILImage.Image:
    img = PILImage.frombytes("RGB", (width, height), _background(width, height))
    draw = ImageDraw.Draw(img)
    horizon = int(height * _HORIZON_FRACTION)
    palette_rng = _position_rng(seed, lat, lon, 0.0005)  # ~50 m cells share a palette
    layout_rng = _position_rng(seed, lat, lon, 0.00002)  # every image differs a little
    palette = palette_rng.integers(70, 235, size=(6, 3))
    x = -int(layout_rng.integers(0, width // 8))
    while x < width:
        block_w = int(layout_rng.integers(width // 14, width // 5))
        block_h = int(layout_rng.integers(height // 10, int(height * 0.42)))
        colour = palette[int(layout_rng.integers(0, len(palette)))]
        fill = (int(colour[0]), int(colour[1]), int(colour[2]))
        top = horizon - block_h
        bottom = horizon + height // 40
        draw.rectangle((x, top, x + block_w, bottom), fill=fill)
        # windows: a coarse grid of darker cells
        win = (fill[0] // 3, fill[1] // 3, fill[2] // 3 + 30)
        step_x = max(8, block_w // 5)
        step_y = max(8, height // 22)
        for wy in range(top + step_y // 2, bottom - step_y, step_y):
            for wx in range(x + step_x // 3, x + block_w - step_x // 2, step_x):
                draw.rectangle((wx, wy, wx + step_x // 2, wy + step_y // 2), fill=win)
        x += block_w + int(layout_rng.integers(0, width // 30))
    if pano:
        # forward at the centre, backward split across both edges
        _draw_road(draw, width / 2, width // 2, height)
        _draw_road(draw, 0, width // 2, height)
        _draw_road(draw, width, width // 2, height)
    else:
        _draw_road(draw, width / 2, width, height)
    for overlay in overlays:
        points = [(u * width, v * height) for u, v in overlay.ring]
        if len(points) >= 3:
            draw.polygon(points, fill=overlay.fill_rgb, outline=overlay.outline_rgb, width=2)
    if label:
        size_px = max(12, height // 24)
        draw.text(
            (size_px, size_px),
            label,
            fill=(255, 255, 255),
            font=_font(size_px),
            stroke_width=2,
            stroke_fill=(0, 0, 0),
        )
    return img


# -- public API ------------------------------------------------------------------------------


def make_jpeg(
    *,
    width: int,
    height: int,
    lat: float,
    lon: float,
    captured_at: datetime,
    compass_deg: float | None,
    altitude_m: float | None = None,
    make: str = "WayviewCam",
    model: str = "Model 1",
    orientation: int = 1,
    pano: bool = False,
    map_description: Mapping[str, Any] | None = None,
    focal_35mm: int | None = None,
    seed: int | None = None,
    quality: int = 80,
    label: str | None = None,
    overlays: Sequence[Overlay] = (),
) -> bytes:
    """A JPEG of a synthetic street scene carrying the given EXIF (and GPano XMP if `pano`).

    Args:
        width, height: pixel size (stored grid; `orientation` is only written, not applied).
        lat, lon: WGS84 position in degrees.
        captured_at: capture time; must be timezone-aware (its offset becomes
            `OffsetTimeOriginal`, milliseconds become `SubSecTimeOriginal`).
        compass_deg: true heading, or None to omit `GPSImgDirection`.
        altitude_m: metres above sea level, or None to omit `GPSAltitude`.
        map_description: a mapillary_tools description object written as compact sorted JSON
            into IFD0 ImageDescription (see `build_map_description`).
        seed: varies the building colours and layout (together with the position).
        label: text drawn in the top-left corner, e.g. the image's index.
        overlays: polygons drawn over the scene (e.g. where the demo's detections are).

    Returns:
        The JPEG file's bytes.

    Raises:
        ValueError: on a naive `captured_at`, a bad size or orientation.
    """
    _require_aware(captured_at)
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    if not 1 <= orientation <= 8:
        raise ValueError("orientation must be 1..8")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError("lat/lon out of range")
    img = _scene(
        width=width,
        height=height,
        lat=lat,
        lon=lon,
        seed=seed,
        pano=pano,
        label=label,
        overlays=overlays,
    )
    exif = _exif_bytes(
        width=width,
        height=height,
        lat=lat,
        lon=lon,
        captured_at=captured_at,
        compass_deg=compass_deg,
        altitude_m=altitude_m,
        make=make,
        model=model,
        orientation=orientation,
        map_description=map_description,
        focal_35mm=focal_35mm,
    )
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, exif=exif)
    data = buf.getvalue()
    if pano:
        data = _insert_xmp(data, gpano_xmp(width=width, height=height, heading_deg=compass_deg))
    return data


def write_jpeg(path: Path | str, **kwargs: Any) -> Path:
    """Write `make_jpeg(**kwargs)` to `path` (parents created); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(make_jpeg(**kwargs))
    return target
