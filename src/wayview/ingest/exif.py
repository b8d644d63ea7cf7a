"""wayview.ingest.exif: read position, time, heading and camera from JPEG EXIF, XMP and MAP* JSON.

Sources, in order of precedence for each field:

1. The mapillary_tools ImageDescription JSON (EXIF IFD0 tag 0x010E, `MAP*` keys, spec §8.5), when
   it parses and the field in it is valid.
2. Standard EXIF (IFD0, Exif and GPS IFDs, read by a small bounds-checked TIFF reader).
3. XMP (`exif:` / `tiff:` properties, as Adobe and exiftool write them), parsed here.

Capture time follows mapillary_tools (`exif_read.py`): the GPS date and time stamps (always UTC)
win over `DateTimeOriginal` + `SubSecTimeOriginal` + `OffsetTimeOriginal`; a `DateTimeOriginal`
without an offset is taken as UTC. The camera is spherical only when the XMP GPano
`ProjectionType` says `equirectangular` (an aspect ratio alone proves nothing for imports).

Every failure on untrusted bytes surfaces as `InvalidInput` with a short reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from wayview.errors import InvalidInput

__all__ = ["PhotoMetadata", "iter_segments", "read_photo_metadata"]

#: The 35 mm film frame's long side: f35 / 36 approximates focal / max(width, height).
FILM_35MM_LONG_SIDE_MM = 36.0

_T = TypeVar("_T")

_JPEG_MAGIC = b"\xff\xd8\xff"
_EXIF_ID = b"Exif\x00\x00"
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_NS_EXIF = "http://ns.adobe.com/exif/1.0/"
_NS_TIFF = "http://ns.adobe.com/tiff/1.0/"
_NS_GPANO = "http://ns.google.com/photos/1.0/panorama/"
#: Conventional prefixes, used only when a packet is not well-formed XML.
_PREFIX_NS = {"exif": _NS_EXIF, "tiff": _NS_TIFF, "GPano": _NS_GPANO}

_MAP_TIME_RE = re.compile(r"(\d{4})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})(?:_(\d{1,6}))?")
_EXIF_DATETIME_RE = re.compile(
    r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)
_OFFSET_RE = re.compile(r"([+-])(\d{2}):?(\d{2})")
_XMP_ATTR_RE = re.compile(r"\b(exif|tiff|GPano):(\w+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_XMP_ELEM_RE = re.compile(r"<(exif|tiff|GPano):(\w+)>([^<]*)</\1:\2>")
_XMP_COORD_RE = re.compile(
    r"\s*(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?(?:,(\d+(?:\.\d+)?))?\s*([NSEWnsew])?\s*"
)


@dataclass(frozen=True, slots=True)
class PhotoMetadata:
    """What a photo says about itself (positions WGS84 degrees, times UTC epoch ms).

    `width` and `height` are the stored pixel grid from the JPEG frame header (EXIF
    orientation not applied, EXIF size tags ignored).
    `camera_parameters` is `(focal, k1, k2)` with focal normalised by max(width, height), or
    None when the file does not tell.
    """

    lat: float
    lon: float
    captured_at_ms: int
    width: int
    height: int
    content_sha256: str
    altitude_m: float | None = None
    compass_angle_deg: float | None = None
    make: str | None = None
    model: str | None = None
    exif_orientation: int = 1
    camera_type: str = "perspective"
    is_pano: bool = False
    camera_parameters: tuple[float, float, float] | None = None


def read_photo_metadata(data: bytes) -> PhotoMetadata:
    """Read a JPEG's position, capture time, heading and camera.

    Args:
        data: the whole file.

    Returns:
        The metadata; `content_sha256` is the hex SHA-256 of `data`.

    Raises:
        InvalidInput: "not a JPEG", "corrupt JPEG: …", "no GPS position", "corrupt EXIF: …" (when
            the EXIF block is unreadable and nothing else gives a position) or "no capture time".
    """
    if not data.startswith(_JPEG_MAGIC):
        raise InvalidInput("not a JPEG")
    (width, height), exif_tiff, xmp_packet = _read_header(data)

    ifd0: _Ifd = {}
    exif_ifd: _Ifd = {}
    gps: _Ifd = {}
    exif_error: str | None = None
    if exif_tiff is not None:
        try:
            ifd0, exif_ifd, gps, exif_error = _read_exif(exif_tiff)
        except InvalidInput as exc:
            exif_error = exc.message
    xmp = _parse_xmp(xmp_packet) if xmp_packet else {}
    desc = _map_description(ifd0.get(_TAG_IMAGE_DESCRIPTION))

    position = _map_position(desc) or _exif_position(gps) or _xmp_position(xmp)
    if position is None:
        raise InvalidInput(exif_error or "no GPS position")
    captured_at_ms = (
        _map_time_ms(desc.get("MAPCaptureTime"))
        or _exif_gps_time_ms(gps)
        or _exif_original_time_ms(exif_ifd)
        or _xmp_time_ms(xmp)
    )
    if captured_at_ms is None:
        raise InvalidInput("no capture time")

    is_pano = _is_equirectangular(xmp)
    return PhotoMetadata(
        lat=position[0],
        lon=position[1],
        captured_at_ms=captured_at_ms,
        width=width,
        height=height,
        content_sha256=hashlib.sha256(data).hexdigest(),
        altitude_m=_first(
            _number(desc.get("MAPAltitude")), _exif_altitude_m(gps), _xmp_altitude_m(xmp)
        ),
        compass_angle_deg=_first(
            _map_heading_deg(desc.get("MAPCompassHeading")),
            _exif_heading_deg(gps),
            _xmp_heading_deg(xmp),
        ),
        make=_first(
            _clean_text(desc.get("MAPDeviceMake")),
            _clean_text(ifd0.get(_TAG_MAKE)),
            _clean_text(xmp.get((_NS_TIFF, "Make"))),
        ),
        model=_first(
            _clean_text(desc.get("MAPDeviceModel")),
            _clean_text(ifd0.get(_TAG_MODEL)),
            _clean_text(xmp.get((_NS_TIFF, "Model"))),
        ),
        exif_orientation=_first(
            _orientation(desc.get("MAPOrientation")),
            _orientation(ifd0.get(_TAG_ORIENTATION)),
            _orientation(_int_text(xmp.get((_NS_TIFF, "Orientation")))),
        )
        or 1,
        camera_type="spherical" if is_pano else "perspective",
        is_pano=is_pano,
        camera_parameters=None if is_pano else _camera_parameters(exif_ifd),
    )


# -- JPEG structure ---------------------------------------------------------------------------


#: Start-of-frame markers (SOF0–SOF15 without DHT, JPG and DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def iter_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """The marker segments before the first scan, as (marker, payload start, payload end).

    Stops quietly at the first inconsistency (a truncated or damaged header): callers treat
    what they did not see as absent. The payload excludes the marker and the length field.
    """
    pos = 2
    size = len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: the header is over
            return
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > size:
            return
        yield marker, pos + 4, pos + 2 + length
        pos += 2 + length


def _read_header(data: bytes) -> tuple[tuple[int, int], bytes | None, bytes | None]:
    """The frame size, the first EXIF block (TIFF bytes) and the first XMP packet."""
    frame: tuple[int, int] | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    for marker, start, end in iter_segments(data):
        if marker in _SOF_MARKERS and frame is None and end - start >= 6:
            height = (data[start + 1] << 8) | data[start + 2]
            width = (data[start + 3] << 8) | data[start + 4]
            frame = (width, height)
        elif marker == 0xE1:
            if exif is None and data.startswith(_EXIF_ID, start):
                exif = data[start + len(_EXIF_ID) : end]
            elif xmp is None and data.startswith(_XMP_ID, start):
                xmp = data[start + len(_XMP_ID) : end]
    if frame is None:
        raise InvalidInput("corrupt JPEG: no frame header")
    if frame[0] <= 0 or frame[1] <= 0:
        raise InvalidInput("corrupt JPEG: empty frame")
    return frame, exif, xmp


# EXIF tags we read (CIPA DC-008 / TIFF 6.0 numbers).
_TAG_IMAGE_DESCRIPTION = 0x010E
_TAG_MAKE = 0x010F
_TAG_MODEL = 0x0110
_TAG_ORIENTATION = 0x0112
_TAG_EXIF_IFD = 0x8769
_TAG_GPS_IFD = 0x8825
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_DATETIME_DIGITIZED = 0x9004
_TAG_OFFSET_TIME_ORIGINAL = 0x9011
_TAG_OFFSET_TIME_DIGITIZED = 0x9012
_TAG_SUBSEC_ORIGINAL = 0x9291
_TAG_SUBSEC_DIGITIZED = 0x9292
_TAG_FOCAL_35MM = 0xA405
_GPS_LATITUDE_REF = 0x01
_GPS_LATITUDE = 0x02
_GPS_LONGITUDE_REF = 0x03
_GPS_LONGITUDE = 0x04
_GPS_ALTITUDE_REF = 0x05
_GPS_ALTITUDE = 0x06
_GPS_TIMESTAMP = 0x07
_GPS_TRACK = 0x0F
_GPS_IMG_DIRECTION = 0x11
_GPS_DATESTAMP = 0x1D
_IFD0_TAGS = frozenset(
    {_TAG_IMAGE_DESCRIPTION, _TAG_MAKE, _TAG_MODEL, _TAG_ORIENTATION, _TAG_EXIF_IFD, _TAG_GPS_IFD}
)
_EXIF_TAGS = frozenset(
    {
        _TAG_DATETIME_ORIGINAL,
        _TAG_DATETIME_DIGITIZED,
        _TAG_OFFSET_TIME_ORIGINAL,
        _TAG_OFFSET_TIME_DIGITIZED,
        _TAG_SUBSEC_ORIGINAL,
        _TAG_SUBSEC_DIGITIZED,
        _TAG_FOCAL_35MM,
    }
)
_GPS_TAGS = frozenset(
    {
        _GPS_LATITUDE_REF,
        _GPS_LATITUDE,
        _GPS_LONGITUDE_REF,
        _GPS_LONGITUDE,
        _GPS_ALTITUDE_REF,
        _GPS_ALTITUDE,
        _GPS_TIMESTAMP,
        _GPS_TRACK,
        _GPS_IMG_DIRECTION,
        _GPS_DATESTAMP,
    }
)
#: TIFF field type → (bytes per value, struct code per value); ASCII/UNDEFINED stay bytes.
_TIFF_TYPES: dict[int, tuple[int, str]] = {
    1: (1, "B"),
    2: (1, ""),
    3: (2, "H"),
    4: (4, "L"),
    5: (8, "LL"),
    6: (1, "b"),
    7: (1, ""),
    8: (2, "h"),
    9: (4, "l"),
    10: (8, "ll"),
    11: (4, "f"),
    12: (8, "d"),
    13: (4, "L"),
}
_Ifd = dict[int, Any]


def _read_exif(tiff: bytes) -> tuple[_Ifd, _Ifd, _Ifd, str | None]:
    """IFD0, the Exif IFD and the GPS IFD (only the tags we use) of an EXIF TIFF block.

    Our own reader rather than piexif: piexif trusts value counts and builds struct formats as
    long as the count (a 4-byte field), so a 60-byte crafted block costs gigabytes. Here every
    read is bounds-checked against the block (at most 64 KiB in a JPEG). Values come out as
    piexif shapes them: bytes for ASCII/UNDEFINED, an int or a tuple of ints, `(num, den)` or a
    tuple of those for rationals.

    Returns:
        (ifd0, exif_ifd, gps_ifd, error): `error` says why part of the block was unreadable.

    Raises:
        InvalidInput: "corrupt EXIF: …" when not even IFD0 can be read.
    """
    if tiff[:4] == b"II*\x00":
        endian = "<"
    elif tiff[:4] == b"MM\x00*":
        endian = ">"
    else:
        raise InvalidInput("corrupt EXIF: bad TIFF header")
    if len(tiff) < 8:
        raise InvalidInput("corrupt EXIF: truncated TIFF header")
    (ifd0_offset,) = struct.unpack_from(endian + "L", tiff, 4)
    ifd0 = _read_ifd(tiff, ifd0_offset, endian, _IFD0_TAGS)
    if ifd0 is None:
        raise InvalidInput("corrupt EXIF: IFD0 out of range")
    error: str | None = None
    sub_ifds: list[_Ifd] = []
    for pointer_tag, wanted, name in (
        (_TAG_EXIF_IFD, _EXIF_TAGS, "Exif"),
        (_TAG_GPS_IFD, _GPS_TAGS, "GPS"),
    ):
        pointer = ifd0.get(pointer_tag)
        if isinstance(pointer, tuple) and len(pointer) == 1:
            pointer = pointer[0]
        ifd = _read_ifd(tiff, pointer, endian, wanted) if isinstance(pointer, int) else {}
        if ifd is None:
            error = f"corrupt EXIF: {name} IFD out of range"
            ifd = {}
        sub_ifds.append(ifd)
    return ifd0, sub_ifds[0], sub_ifds[1], error


def _read_ifd(tiff: bytes, offset: int, endian: str, wanted: frozenset[int]) -> _Ifd | None:
    """The `wanted` entries of the IFD at `offset`, or None if the IFD lies outside the block.

    Entries whose values lie outside the block, or have types we do not know, are skipped.
    """
    size = len(tiff)
    if offset < 8 or offset + 2 > size:
        return None
    (count,) = struct.unpack_from(endian + "H", tiff, offset)
    if offset + 2 + 12 * count > size:
        return None
    entries: _Ifd = {}
    for index in range(count):
        entry = offset + 2 + 12 * index
        tag, field_type, n = struct.unpack_from(endian + "HHL", tiff, entry)
        if tag not in wanted or tag in entries or n == 0 or field_type not in _TIFF_TYPES:
            continue
        unit, code = _TIFF_TYPES[field_type]
        total = unit * n
        if total > size:
            continue
        start = entry + 8 if total <= 4 else struct.unpack_from(endian + "L", tiff, entry + 8)[0]
        if start + total > size:
            continue
        if not code:  # ASCII (up to the first NUL) or UNDEFINED
            raw = tiff[start : start + total]
            entries[tag] = raw.split(b"\x00", 1)[0] if field_type == 2 else raw
            continue
        values = struct.unpack_from(f"{endian}{n * len(code)}{code[0]}", tiff, start)
        if len(code) == 2:  # rationals: (numerator, denominator) pairs
            pairs = tuple(zip(values[0::2], values[1::2], strict=True))
            entries[tag] = pairs[0] if n == 1 else pairs
        else:
            entries[tag] = values[0] if n == 1 else values
    return entries


# -- value coercion ---------------------------------------------------------------------------


def _first(*values: _T | None) -> _T | None:
    for value in values:
        if value is not None:
            return value
    return None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _rational(value: Any) -> float | None:
    """A RATIONAL `(num, den)` (or a plain integer) as a float; None for 0 denominators."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return _finite(value)
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(part, int) and not isinstance(part, bool) for part in value)
    ):
        num, den = value
        if den == 0:
            return None
        return _finite(num / den)
    return None


def _rationals(value: Any, count: int) -> list[float] | None:
    """1..`count` RATIONALs (degrees/minutes/seconds or hours/minutes/seconds), padded with 0."""
    if not isinstance(value, tuple) or not value:
        return None
    parts = [value] if not isinstance(value[0], tuple) else list(value)
    if not 1 <= len(parts) <= count:
        return None
    floats = [_rational(part) for part in parts]
    if any(f is None for f in floats):
        return None
    return [f for f in floats if f is not None] + [0.0] * (count - len(parts))


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return None


def _clean_text(value: Any) -> str | None:
    """Text without NULs and surrounding whitespace; None when nothing is left."""
    text = _text(value)
    if text is None:
        return None
    text = text.replace("\x00", "").strip()
    return text or None


def _number(value: Any) -> float | None:
    """A finite JSON number or numeric string (legacy MAP* JSON writes `"37.000000"`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _finite(float(value))
    if isinstance(value, str):
        try:
            return _finite(float(value.strip()))
        except ValueError:
            return None
    return None


def _int_text(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _orientation(value: Any) -> int | None:
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        value = _int_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    return None


def _heading(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value % 360.0


POSITION_DECIMALS = 9  # 1e-9 degrees is 0.1 mm: far below GPS precision


def _valid_position(lat: float, lon: float) -> tuple[float, float] | None:
    """(lat, lon) if in range; (0, 0) is the "no fix yet" value many cameras write.

    Rounded to `POSITION_DECIMALS`, so degree/minute/second arithmetic leaves no float noise
    (`55.701965300000005`) in the stored and served coordinates.
    """
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    if lat == 0.0 and lon == 0.0:
        return None
    return round(lat, POSITION_DECIMALS), round(lon, POSITION_DECIMALS)


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _make_time_ms(
    ymd: tuple[int, int, int],
    clock: tuple[float, float, float],
    offset: timedelta = timedelta(0),
) -> int | None:
    """Epoch ms of a local date + clock time at `offset` from UTC (tolerates 24:00:00)."""
    hours, minutes, seconds = clock
    if not (0 <= hours <= 24 and 0 <= minutes < 60 and 0 <= seconds < 61):
        return None
    try:
        day = datetime.combine(date(*ymd), datetime.min.time(), tzinfo=UTC)
        moment = day + timedelta(hours=hours, minutes=minutes, seconds=seconds) - offset
    except (ValueError, OverflowError):
        return None
    return _epoch_ms(moment)


def _fraction_s(digits: str | None) -> float:
    return int(digits) / 10 ** len(digits) if digits else 0.0


def _offset(text: str | None) -> timedelta | None:
    if not text:
        return None
    text = text.strip()
    if text == "Z":
        return timedelta(0)
    match = _OFFSET_RE.fullmatch(text)
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= timedelta(hours=24):
        return None
    return -delta if sign == "-" else delta


# -- mapillary_tools description (spec §8.5) ---------------------------------------------------


def _map_description(value: Any) -> dict[str, Any]:
    """The MAP* JSON object of ImageDescription, or {} when absent or not a MAP* description."""
    text = _text(value)
    if text is None:
        return {}
    text = text.replace("\x00", "").strip()
    if not text.startswith("{"):
        return {}
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(parsed, dict) or not any(str(key).startswith("MAP") for key in parsed):
        return {}
    return parsed


def _map_position(desc: dict[str, Any]) -> tuple[float, float] | None:
    lat = _number(desc.get("MAPLatitude"))
    lon = _number(desc.get("MAPLongitude"))
    if lat is None or lon is None:
        return None
    return _valid_position(lat, lon)


def _map_time_ms(value: Any) -> int | None:
    """`YYYY_MM_DD_HH_MM_SS[_f{1,6}]`, UTC."""
    if not isinstance(value, str):
        return None
    match = _MAP_TIME_RE.fullmatch(value.strip())
    if match is None:
        return None
    y, mo, d, h, mi, s, frac = match.groups()
    return _make_time_ms((int(y), int(mo), int(d)), (int(h), int(mi), int(s) + _fraction_s(frac)))


def _map_heading_deg(value: Any) -> float | None:
    """TrueHeading, else MagneticHeading. Negative values mean "invalid" (iOS CLHeading)."""
    if not isinstance(value, dict):
        return None
    for key in ("TrueHeading", "MagneticHeading"):
        heading = _number(value.get(key))
        if heading is not None and heading >= 0:
            return _heading(heading)
    return None


# -- EXIF --------------------------------------------------------------------------------------


def _ref(value: Any) -> str:
    text = _clean_text(value)
    return text[:1].upper() if text else ""


def _exif_position(gps: dict[int, Any]) -> tuple[float, float] | None:
    lat_dms = _rationals(gps.get(_GPS_LATITUDE), 3)
    lon_dms = _rationals(gps.get(_GPS_LONGITUDE), 3)
    if lat_dms is None or lon_dms is None:
        return None
    lat = lat_dms[0] + lat_dms[1] / 60 + lat_dms[2] / 3600
    lon = lon_dms[0] + lon_dms[1] / 60 + lon_dms[2] / 3600
    if _ref(gps.get(_GPS_LATITUDE_REF)) == "S":
        lat = -lat
    if _ref(gps.get(_GPS_LONGITUDE_REF)) == "W":
        lon = -lon
    return _valid_position(lat, lon)


def _exif_altitude_m(gps: dict[int, Any]) -> float | None:
    altitude = _rational(gps.get(_GPS_ALTITUDE))
    if altitude is None:
        return None
    ref = gps.get(_GPS_ALTITUDE_REF)
    if isinstance(ref, bytes) and len(ref) == 1:
        ref = ref[0]
    return -altitude if ref == 1 else altitude


def _exif_heading_deg(gps: dict[int, Any]) -> float | None:
    for tag in (_GPS_IMG_DIRECTION, _GPS_TRACK):
        heading = _heading(_rational(gps.get(tag)))
        if heading is not None:
            return heading
    return None


def _parse_date(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    parts = re.split(r"[:-]", text.strip())
    if len(parts) != 3 or not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def _exif_gps_time_ms(gps: dict[int, Any]) -> int | None:
    """GPSDateStamp + GPSTimeStamp (UTC by definition)."""
    ymd = _parse_date(_clean_text(gps.get(_GPS_DATESTAMP)))
    hms = _rationals(gps.get(_GPS_TIMESTAMP), 3)
    if ymd is None or hms is None:
        return None
    return _make_time_ms(ymd, (hms[0], hms[1], hms[2]))


def _parse_exif_datetime(
    text: str | None, subsec: str | None = None, offset: str | None = None
) -> int | None:
    """`YYYY:MM:DD HH:MM:SS[.fff][±HH:MM]` (or ISO 8601) plus optional sub-seconds and offset.

    No offset anywhere: the time is taken as UTC.
    """
    if not text:
        return None
    match = _EXIF_DATETIME_RE.fullmatch(text.strip())
    if match is None:
        return None
    y, mo, d, h, mi, s, inline_frac, inline_offset = match.groups()
    # GoPro pads SubSecTime with spaces (mapillary_tools issue #388).
    digits = (subsec or "").strip().replace(" ", "0")
    frac = digits if digits.isascii() and digits.isdigit() else inline_frac
    delta = _offset(offset) or _offset(inline_offset) or timedelta(0)
    return _make_time_ms(
        (int(y), int(mo), int(d)), (int(h), int(mi), int(s) + _fraction_s(frac)), delta
    )


def _exif_original_time_ms(exif_ifd: dict[int, Any]) -> int | None:
    for dt_tag, subsec_tag, offset_tag in (
        (_TAG_DATETIME_ORIGINAL, _TAG_SUBSEC_ORIGINAL, _TAG_OFFSET_TIME_ORIGINAL),
        (_TAG_DATETIME_DIGITIZED, _TAG_SUBSEC_DIGITIZED, _TAG_OFFSET_TIME_DIGITIZED),
    ):
        ms = _parse_exif_datetime(
            _clean_text(exif_ifd.get(dt_tag)),
            _clean_text(exif_ifd.get(subsec_tag)),
            _clean_text(exif_ifd.get(offset_tag)),
        )
        if ms is not None:
            return ms
    return None


def _camera_parameters(exif_ifd: dict[int, Any]) -> tuple[float, float, float] | None:
    f35 = exif_ifd.get(_TAG_FOCAL_35MM)
    if isinstance(f35, tuple) and len(f35) == 1:
        f35 = f35[0]
    if isinstance(f35, int) and not isinstance(f35, bool) and f35 > 0:
        return (f35 / FILM_35MM_LONG_SIDE_MM, 0.0, 0.0)
    return None


# -- XMP ---------------------------------------------------------------------------------------

_XmpProps = dict[tuple[str, str], str]


def _parse_xmp(packet: bytes) -> _XmpProps:
    """Simple XMP properties as {(namespace, name): text}, from attributes and leaf elements.

    Well-formed packets are parsed with namespaces; packets that are not XML (or declare a DTD,
    which we never expand) fall back to matching the conventional `exif:`/`tiff:`/`GPano:`
    prefixes.
    """
    text = packet.decode("utf-8", "replace")
    start = text.find("<x:xmpmeta")
    if start < 0:
        start = text.find("<rdf:RDF")
    end_tag = "</x:xmpmeta>" if text.startswith("<x:xmpmeta", start) else "</rdf:RDF>"
    end = text.find(end_tag, start)
    if start < 0 or end < 0:
        return _parse_xmp_loose(text)
    body = text[start : end + len(end_tag)]
    if "<!" in body:
        return _parse_xmp_loose(body)
    try:
        root = ET.fromstring(body)
    except (ET.ParseError, RecursionError):
        return _parse_xmp_loose(body)
    props: _XmpProps = {}
    for element in root.iter():
        for key, value in element.attrib.items():
            if key.startswith("{"):
                ns, _, name = key[1:].partition("}")
                props.setdefault((ns, name), value)
        tag = element.tag
        if isinstance(tag, str) and tag.startswith("{") and len(element) == 0 and element.text:
            ns, _, name = tag[1:].partition("}")
            props.setdefault((ns, name), element.text.strip())
    return props


def _parse_xmp_loose(text: str) -> _XmpProps:
    props: _XmpProps = {}
    for prefix, name, double_quoted, single_quoted in _XMP_ATTR_RE.findall(text):
        value = double_quoted if double_quoted else single_quoted
        props.setdefault((_PREFIX_NS[prefix], name), value)
    for prefix, name, value in _XMP_ELEM_RE.findall(text):
        props.setdefault((_PREFIX_NS[prefix], name), value.strip())
    return props


def _xmp_rational(text: str | None) -> float | None:
    """`"1763/10"` or `"176.3"`."""
    if text is None:
        return None
    num, slash, den = text.strip().partition("/")
    try:
        if not slash:
            return _finite(float(num))
        numerator, denominator = float(num), float(den)
    except ValueError:
        return None
    return None if denominator == 0 else _finite(numerator / denominator)


def _xmp_coordinate(text: str | None) -> float | None:
    """XMP GPSCoordinate: `"DDD,MM,SSk"`, `"DDD,MM.mmk"` or decimal degrees (k = N/S/E/W)."""
    if text is None:
        return None
    match = _XMP_COORD_RE.fullmatch(text)
    if match is None:
        return None
    degrees, minutes, seconds, ref = match.groups()
    value = float(degrees) + float(minutes or 0) / 60 + float(seconds or 0) / 3600
    return -value if ref and ref.upper() in "SW" else value


def _xmp_position(xmp: _XmpProps) -> tuple[float, float] | None:
    lat = _xmp_coordinate(xmp.get((_NS_EXIF, "GPSLatitude")))
    lon = _xmp_coordinate(xmp.get((_NS_EXIF, "GPSLongitude")))
    if lat is None or lon is None:
        return None
    return _valid_position(lat, lon)


def _xmp_altitude_m(xmp: _XmpProps) -> float | None:
    altitude = _xmp_rational(xmp.get((_NS_EXIF, "GPSAltitude")))
    if altitude is None:
        return None
    return -altitude if _int_text(xmp.get((_NS_EXIF, "GPSAltitudeRef"))) == 1 else altitude


def _xmp_heading_deg(xmp: _XmpProps) -> float | None:
    for name in ("GPSImgDirection", "GPSTrack"):
        heading = _heading(_xmp_rational(xmp.get((_NS_EXIF, name))))
        if heading is not None:
            return heading
    return None


def _xmp_time_ms(xmp: _XmpProps) -> int | None:
    gps_time = xmp.get((_NS_EXIF, "GPSTimeStamp"))
    if gps_time and "T" in gps_time:  # an ISO date-time (XMP writes GPS time this way)
        ms = _parse_exif_datetime(gps_time)
        if ms is not None:
            return ms
    return _parse_exif_datetime(xmp.get((_NS_EXIF, "DateTimeOriginal")))


def _is_equirectangular(xmp: _XmpProps) -> bool:
    """GPano says so: ProjectionType, or (without one) the panorama-viewer flag or 2:1 full size.

    GPano defines only the equirectangular projection, so a packet that marks a photo as a
    panorama without naming a projection means equirectangular.
    """
    projection = xmp.get((_NS_GPANO, "ProjectionType"))
    if projection is not None:
        return projection.strip().lower() == "equirectangular"
    if (xmp.get((_NS_GPANO, "UsePanoramaViewer")) or "").strip().lower() == "true":
        return True
    full_width = _int_text(xmp.get((_NS_GPANO, "FullPanoWidthPixels")))
    full_height = _int_text(xmp.get((_NS_GPANO, "FullPanoHeightPixels")))
    return bool(full_width and full_height and full_width == 2 * full_height)
