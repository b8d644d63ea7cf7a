"""wayview.ingest.video.blackvue: GPS from a BlackVue dash-cam MP4 (NMEA in `free/gps `).

BlackVue writes a top-level `free` box holding a `gps ` box of text lines
`[<camera clock, epoch ms>]$GPRMC,…` (also GGA and GLL) and a `cprt` box naming the model
(JSON `{"model": …}` or `maker;model;…`). Like mapillary_tools, the camera clock is corrected
by the offset between it and the first valid RMC sentence (which carries the UTC date), and
fixes come from RMC when present, else GGA, else GLL. Video time is the camera clock minus
that of the first fix.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import BinaryIO

from wayview.ingest.video.mp4 import child_boxes, iter_top_level_boxes
from wayview.ingest.video.track import GpsPoint, VideoTelemetry, valid_position

__all__ = ["parse_nmea_log", "read_blackvue"]

_LINE = re.compile(rb"^\s*\[(\d{1,16})\]\s*(\$[A-Z]{2}[A-Z]{3},[^\[\r\n]*)")
#: Most NMEA lines read from one file.
_MAX_LINES = 2_000_000


def read_blackvue(fh: BinaryIO) -> VideoTelemetry | None:
    """The NMEA track of a BlackVue file; None when there is no `free/gps ` box."""
    children = next((found for found in map(child_boxes, iter_top_level_boxes(fh, b"free"))
                     if b"gps " in found), None)
    if children is None:
        return None
    return VideoTelemetry(points=tuple(parse_nmea_log(children[b"gps "])), source="blackvue",
                          make="BlackVue", model=_model(children.get(b"cprt", b"")))


def parse_nmea_log(data: bytes) -> list[GpsPoint]:
    """Fixes of a BlackVue NMEA log, in time order.

    >>> [(round(p.lat, 6), round(p.lon, 6), p.epoch_s) for p in parse_nmea_log(
    ...     b"[1629874404069]$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B")]
    [(44.068999, -121.314337, 1484007031.0)]
    """
    by_kind: dict[str, list[tuple[float, float, float, float | None]]] = {}
    offset_s: float | None = None
    for count, line in enumerate(data.splitlines()):
        if count >= _MAX_LINES:
            break
        match = _LINE.match(line)
        if match is None:
            continue
        camera_s = int(match.group(1)) / 1000
        sentence = match.group(2).decode("ascii", "replace").strip()
        fields = _fields(sentence)
        if fields is None:
            continue
        kind = fields[0][2:]
        fix = _fix(kind, fields)
        if fix is None:
            continue
        lat, lon, alt, utc_s = fix
        if kind == "RMC" and offset_s is None and utc_s is not None:
            offset_s = round(utc_s - camera_s, 3)
        by_kind.setdefault(kind, []).append((camera_s, lat, lon, alt))
    chosen = next((by_kind[k] for k in ("RMC", "GGA", "GLL") if by_kind.get(k)), [])
    if not chosen:
        return []
    chosen.sort(key=lambda row: row[0])
    first_s = chosen[0][0]
    shift = offset_s or 0.0
    return [GpsPoint(camera_s - first_s, lat, lon, alt, round(camera_s + shift, 3))
            for camera_s, lat, lon, alt in chosen]


def _fields(sentence: str) -> list[str] | None:
    """The comma-separated fields of a sentence without `$`; None on a bad checksum."""
    body, star, checksum = sentence[1:].partition("*")
    if star:
        expected = 0
        for ch in body:
            expected ^= ord(ch)
        try:
            if int(checksum[:2], 16) != expected:
                return None
        except ValueError:
            return None
    return body.split(",")


def _coordinate(value: str, hemisphere: str) -> float | None:
    """`ddmm.mmmm` / `dddmm.mmmm` with N/S/E/W."""
    try:
        raw = float(value)
    except ValueError:
        return None
    if not math.isfinite(raw):
        return None
    degrees = int(raw // 100)
    result = degrees + (raw - degrees * 100) / 60
    return -result if hemisphere in ("S", "W") else result


def _fix(kind: str, f: list[str]) -> tuple[float, float, float | None, float | None] | None:
    """(lat, lon, altitude, UTC seconds from an RMC date) of a valid RMC/GGA/GLL sentence."""
    lat = lon = None
    alt: float | None = None
    utc_s: float | None = None
    if kind == "RMC" and len(f) >= 10 and f[2] == "A":
        lat, lon = _coordinate(f[3], f[4]), _coordinate(f[5], f[6])
        utc_s = _rmc_time(f[1], f[9])
    elif kind == "GGA" and len(f) >= 10 and f[6] not in ("", "0"):
        lat, lon = _coordinate(f[2], f[3]), _coordinate(f[4], f[5])
        try:
            alt = float(f[9])
        except ValueError:
            alt = None
    elif kind == "GLL" and len(f) >= 7 and f[6] == "A":
        lat, lon = _coordinate(f[1], f[2]), _coordinate(f[3], f[4])
    if lat is None or lon is None or not valid_position(lat, lon):
        return None
    if alt is not None and not math.isfinite(alt):
        alt = None
    return lat, lon, alt, utc_s


def _rmc_time(clock: str, day: str) -> float | None:
    try:
        moment = datetime.strptime(f"{day} {clock.split('.')[0]}", "%d%m%y %H%M%S")
    except ValueError:
        return None
    fraction = float("0." + clock.split(".")[1]) if "." in clock else 0.0
    return moment.replace(tzinfo=UTC).timestamp() + fraction


def _model(cprt: bytes) -> str | None:
    text = cprt.strip().strip(b"\x00").decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        model = str(parsed.get("model", "")).strip()
    else:
        parts = text.split(";")
        model = parts[1].strip() if len(parts) >= 2 else ""
    return model[:200] or None
