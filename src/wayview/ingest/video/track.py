"""wayview.ingest.video.track: the GPS track a video carries, whatever format it came in."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["GpsPoint", "VideoTelemetry", "valid_position"]


@dataclass(frozen=True, slots=True)
class GpsPoint:
    """One GPS fix at `time_s` seconds into the video (movie time).

    `epoch_s` is the fix's UTC time in Unix seconds when the source records it.
    """

    time_s: float
    lat: float
    lon: float
    alt_m: float | None = None
    epoch_s: float | None = None


@dataclass(frozen=True, slots=True)
class VideoTelemetry:
    """A video's GPS track (in time order) and camera, and which format they came from."""

    points: tuple[GpsPoint, ...]
    source: str
    make: str | None = None
    model: str | None = None


def valid_position(lat: float, lon: float) -> bool:
    """A finite WGS84 position other than (0, 0), the "no fix yet" value of many devices.

    >>> valid_position(55.7, 13.19), valid_position(0.0, 0.0), valid_position(91.0, 0.0)
    (True, False, False)
    """
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return False
    return not (lat == 0.0 and lon == 0.0)
