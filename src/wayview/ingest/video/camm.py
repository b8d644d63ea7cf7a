"""wayview.ingest.video.camm: GPS from a CAMM track (Camera Motion Metadata, spec §8.5).

mapillary_tools rewrites every video it uploads as `mly_camm_video` to carry a track whose
sample entry is `camm`. Each sample is one packet: 2 reserved bytes, a little-endian `uint16`
type, then the payload. We read type 5 (minimal GPS: latitude, longitude, altitude as float64)
and type 6 (full GPS: `time_gps_epoch` f64, `gps_fix_type` i32, latitude f64, longitude f64,
altitude f32, then accuracies and velocities); other types are skipped. A sample's time is its
decode time mapped through the track's edit list.

`time_gps_epoch` is taken as Unix seconds, which is what mapillary_tools writes there.
Camera make and model come from `moov/udta` (`@mak`/`@mod`, `©mak`/`©mod`, `manu`/`modl`).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from wayview.ingest.video.mp4 import Movie, Track, read_sample
from wayview.ingest.video.track import GpsPoint, VideoTelemetry, valid_position

__all__ = ["CAMM_FORMAT", "camera_from_udta", "parse_camm_packet", "read_camm"]

CAMM_FORMAT = b"camm"
_HEADER = struct.Struct("<HH")
_MIN_GPS = struct.Struct("<ddd")
_GPS = struct.Struct("<didd7f")
#: Packets larger than this are not GPS (types 5 and 6 are 28 and 60 bytes).
_MAX_GPS_PACKET = 256
#: Earliest plausible `time_gps_epoch` (2000-01-01); smaller values mean "unknown".
_MIN_EPOCH_S = 946_684_800.0


def parse_camm_packet(data: bytes) -> tuple[float, float, float | None, float | None] | None:
    """(lat, lon, altitude, epoch seconds) of a CAMM type 5 or 6 packet; None for other types,
    truncated packets, invalid positions and type 6 packets without a fix.

    >>> parse_camm_packet(b"\\0\\0\\x05\\0" + struct.pack("<ddd", 55.7, 13.19, 20.0))
    (55.7, 13.19, 20.0, None)
    """
    if len(data) < _HEADER.size:
        return None
    _reserved, kind = _HEADER.unpack_from(data)
    body = memoryview(data)[_HEADER.size :]
    if kind == 5 and len(body) >= _MIN_GPS.size:
        lat, lon, alt = _MIN_GPS.unpack_from(body)
        epoch: float | None = None
    elif kind == 6 and len(body) >= _GPS.size:
        epoch, fix, lat, lon, alt = _GPS.unpack_from(body)[:5]
        if fix == 0:
            return None
        if not (epoch >= _MIN_EPOCH_S and epoch < 1e11):
            epoch = None
    else:
        return None
    if not valid_position(lat, lon):
        return None
    altitude = float(alt) if alt == alt and abs(alt) < 1e5 else None
    return float(lat), float(lon), altitude, epoch


def read_camm(fh: BinaryIO, movie: Movie) -> VideoTelemetry | None:
    """The GPS track of the first CAMM track; None when the file has none."""
    track = next((t for t in movie.tracks if CAMM_FORMAT in t.formats), None)
    if track is None or not track.timescale:
        return None
    make, model = camera_from_udta(movie.udta)
    return VideoTelemetry(points=tuple(_points(fh, track, movie.timescale)), source="camm",
                          make=make, model=model)


def _points(fh: BinaryIO, track: Track, movie_timescale: int) -> list[GpsPoint]:
    offset_s = track.presentation_offset_s(movie_timescale)
    points: list[GpsPoint] = []
    for position, size, media_time in zip(track.sample_offsets.tolist(),
                                          track.sample_sizes.tolist(),
                                          track.sample_times.tolist(), strict=True):
        if not _HEADER.size + _MIN_GPS.size <= size <= _MAX_GPS_PACKET:
            continue
        fix = parse_camm_packet(read_sample(fh, position, size))
        if fix is None:
            continue
        time_s = offset_s + media_time / track.timescale
        if time_s < 0:
            continue
        lat, lon, alt, epoch = fix
        points.append(GpsPoint(time_s, lat, lon, alt, epoch))
    points.sort(key=lambda p: p.time_s)
    return points


def camera_from_udta(udta: dict[bytes, bytes]) -> tuple[str | None, str | None]:
    """Camera make and model from `udta` boxes, as mapillary_tools and cameras write them.

    >>> camera_from_udta({b"@mak": b"TestMake", b"\\xa9mod": b"\\x00\\x05\\x15\\xc7Model"})
    ('TestMake', 'Model')
    """
    make = _text(udta, b"@mak", b"manu", quicktime=b"\xa9mak")
    model = _text(udta, b"@mod", b"modl", quicktime=b"\xa9mod")
    return make, model


def _text(udta: dict[bytes, bytes], *plain: bytes, quicktime: bytes) -> str | None:
    for key in plain:
        if key in udta:
            value = _clean(udta[key])
            if value:
                return value
    raw = udta.get(quicktime)
    if raw is not None and len(raw) >= 4:  # QuickTime string: u16 size, u16 language, text
        (size,) = struct.unpack_from(">H", raw)
        value = _clean(raw[4 : 4 + size])
        if value:
            return value
    return None


def _clean(raw: bytes) -> str | None:
    text = raw.replace(b"\x00", b"").decode("utf-8", "replace").strip()
    return text[:200] or None
