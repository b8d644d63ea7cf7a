"""wayview.ingest.video.gpmf: GPS from GoPro's GPMF telemetry track (`gpmd` samples).

GPMF is a KLV format: a FourCC key, a one-byte type, a one-byte structure size and a
big-endian 16-bit repeat count, then `size * repeat` bytes padded to 4. Type 0 nests. Each
`STRM` holding `GPS5` (latitude, longitude, altitude, 2-D and 3-D speed as int32 divided by
`SCAL`) or `GPS9` (the same plus days since 2000, seconds of day, DOP and fix, described by a
`TYPE` string) is read; `GPSU` gives the UTC time of the payload and `GPSF` its fix (< 2 = no
fix, skipped). The fixes of one sample are spread evenly over the sample's duration. The
device name (`DVNM`) becomes the camera model.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from wayview.ingest.video.mp4 import Movie, Track, read_sample
from wayview.ingest.video.track import GpsPoint, VideoTelemetry, valid_position

__all__ = ["GPMF_FORMAT", "iter_klv", "read_gpmf"]

GPMF_FORMAT = b"gpmd"
#: Largest GPMF sample read (a second of telemetry is a few kilobytes).
_MAX_SAMPLE_BYTES = 16 * 1024 * 1024
_MAX_DEPTH = 8
_EPOCH_2000_S = 946_684_800.0
#: Bytes per value of each GPMF type letter, and its struct code.
_TYPES: dict[str, tuple[int, str]] = {
    "b": (1, "b"), "B": (1, "B"), "c": (1, "c"), "d": (8, "d"), "f": (4, "f"),
    "F": (4, "4s"), "j": (8, "q"), "J": (8, "Q"), "l": (4, "i"), "L": (4, "I"),
    "s": (2, "h"), "S": (2, "H"), "U": (16, "16s"),
}


@dataclass(frozen=True, slots=True)
class Klv:
    """One GPMF entry: key, type letter (`\\0` = nested), structure size, repeat, payload."""

    key: bytes
    type: str
    size: int
    repeat: int
    data: bytes


def iter_klv(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Klv]:
    """The entries packed in `data[start:end]`; stops quietly at a truncated entry.

    >>> [k.key for k in iter_klv(b"DVNM" + b"c\\x01\\x00\\x04" + b"Test")]
    [b'DVNM']
    """
    end = len(data) if end is None else end
    pos = start
    while end - pos >= 8:
        key = data[pos : pos + 4]
        type_char = chr(data[pos + 4])
        size = data[pos + 5]
        (repeat,) = struct.unpack_from(">H", data, pos + 6)
        length = size * repeat
        if pos + 8 + length > end:
            return
        yield Klv(key, type_char, size, repeat, data[pos + 8 : pos + 8 + length])
        pos += 8 + ((length + 3) & ~3)


@dataclass(slots=True)
class _Stream:
    """The GPS-related entries of one STRM."""

    scale: list[float] = field(default_factory=list)
    fix: int | None = None
    utc_s: float | None = None
    type_string: str = ""
    gps5: list[tuple[float, ...]] = field(default_factory=list)
    gps9: list[tuple[float, ...]] = field(default_factory=list)


def read_gpmf(fh: BinaryIO, movie: Movie) -> VideoTelemetry | None:
    """The GPS track of the first GPMF track; None when the file has none."""
    track = next((t for t in movie.tracks if GPMF_FORMAT in t.formats), None)
    if track is None or not track.timescale:
        return None
    device: list[str] = []
    points = _points(fh, track, movie.timescale, device)
    return VideoTelemetry(points=tuple(points), source="gpmf", make="GoPro",
                          model=device[0] if device else None)


def _points(fh: BinaryIO, track: Track, movie_timescale: int, device: list[str]
            ) -> list[GpsPoint]:
    offset_s = track.presentation_offset_s(movie_timescale)
    points: list[GpsPoint] = []
    for position, size, media_time, duration in zip(
        track.sample_offsets.tolist(), track.sample_sizes.tolist(),
        track.sample_times.tolist(), track.sample_durations.tolist(), strict=True,
    ):
        if not 8 <= size <= _MAX_SAMPLE_BYTES:
            continue
        start_s = offset_s + media_time / track.timescale
        span_s = duration / track.timescale
        for stream in _gps_streams(read_sample(fh, position, size), device):
            points.extend(_stream_points(stream, start_s, span_s))
    points.sort(key=lambda p: p.time_s)
    return [p for p in points if p.time_s >= 0]


def _gps_streams(data: bytes, device: list[str]) -> Iterator[_Stream]:
    for devc in iter_klv(data):
        if devc.key != b"DEVC" or devc.type != "\0":
            continue
        name = ""
        for entry in iter_klv(devc.data):
            if entry.key == b"DVNM" and entry.type == "c":
                name = entry.data.split(b"\0")[0].decode("utf-8", "replace").strip()
            elif entry.key == b"STRM" and entry.type == "\0":
                stream = _read_stream(entry.data)
                if stream.gps5 or stream.gps9:
                    if name and not device:
                        device.append(name[:200])
                    yield stream


def _read_stream(data: bytes) -> _Stream:
    stream = _Stream()
    for entry in iter_klv(data):
        if entry.key == b"SCAL":
            stream.scale = [value for row in _values(entry) for value in row]
        elif entry.key == b"GPSF":
            values = _values(entry)
            stream.fix = int(values[0][0]) if values else None
        elif entry.key == b"GPSU" and entry.type == "U":
            stream.utc_s = _parse_utc(entry.data[:16])
        elif entry.key == b"TYPE" and entry.type == "c":
            stream.type_string = entry.data.split(b"\0")[0].decode("ascii", "replace")
        elif entry.key == b"GPS5" and entry.type == "l" and entry.size == 20:
            stream.gps5 = [tuple(map(float, row)) for row in struct.iter_unpack(">5i", entry.data)]
        elif entry.key == b"GPS9":
            stream.gps9 = _complex_rows(entry, stream.type_string)
    return stream


def _values(entry: Klv) -> list[tuple[float, ...]]:
    """Numeric values of a simple entry, one tuple per repeat."""
    spec = _TYPES.get(entry.type)
    if spec is None or spec[1] in ("c", "4s", "16s") or entry.size % spec[0]:
        return []
    per_row = entry.size // spec[0]
    fmt = ">" + spec[1] * per_row
    return [tuple(float(v) for v in row) for row in struct.iter_unpack(fmt, entry.data)]


def _complex_rows(entry: Klv, type_string: str) -> list[tuple[float, ...]]:
    """Rows of a `?`-typed entry described by its stream's TYPE string (e.g. `lllllllSS`)."""
    if entry.type != "?" or not type_string:
        return []
    codes = [_TYPES.get(letter) for letter in type_string]
    if any(c is None or c[1] in ("c", "4s", "16s") for c in codes):
        return []
    fmt = ">" + "".join(c[1] for c in codes if c is not None)
    if struct.calcsize(fmt) != entry.size:
        return []
    return [tuple(float(v) for v in row) for row in struct.iter_unpack(fmt, entry.data)]


def _scaled(row: tuple[float, ...], scale: list[float]) -> list[float]:
    out = []
    for k, value in enumerate(row):
        divisor = scale[k] if k < len(scale) else (scale[-1] if scale else 1.0)
        out.append(value / divisor if divisor else value)
    return out


def _stream_points(stream: _Stream, start_s: float, span_s: float) -> Iterator[GpsPoint]:
    if stream.fix is not None and stream.fix < 2:
        return
    if stream.gps9:
        for k, row in enumerate(stream.gps9):
            values = _scaled(row, stream.scale)
            if len(values) < 9 or values[8] < 2:
                continue
            lat, lon, alt = values[0], values[1], values[2]
            if valid_position(lat, lon):
                epoch = _EPOCH_2000_S + values[5] * 86_400 + values[6]
                time_s = start_s + span_s * k / len(stream.gps9)
                yield GpsPoint(time_s, lat, lon, alt, epoch)
        return
    count = len(stream.gps5)
    for k, row in enumerate(stream.gps5):
        lat, lon, alt = _scaled(row, stream.scale)[:3]
        if not valid_position(lat, lon):
            continue
        time_s = start_s + span_s * k / count
        utc = stream.utc_s + span_s * k / count if stream.utc_s is not None else None
        yield GpsPoint(time_s, lat, lon, alt, utc)


def _parse_utc(raw: bytes) -> float | None:
    """`yymmddhhmmss.sss` (GPSU) as Unix seconds.

    >>> _parse_utc(b"191118234514.000")
    1574120714.0
    """
    try:
        moment = datetime.strptime(raw.decode("ascii"), "%y%m%d%H%M%S.%f")
    except (UnicodeDecodeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC).timestamp()
