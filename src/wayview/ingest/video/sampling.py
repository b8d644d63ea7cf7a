"""wayview.ingest.video.sampling: where to take frames from a video and what each frame says.

Frames are taken every `distance_m` metres along the GPS track (the first at the first fix).
Each frame's position, altitude and UTC time are interpolated linearly between the two fixes
around it; its heading is the direction of travel over `distance_m` centred on it. Capture
times come from the fixes' own UTC times where the source records them, else from the
video's start time plus the movie time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wayview.ingest.video.track import GpsPoint
from wayview.model.geo import bearing_deg, haversine_m

__all__ = ["FramePlan", "bearing_deg", "plan_frames"]


@dataclass(frozen=True, slots=True)
class FramePlan:
    """One frame to take: at `time_s` into the video, with what its image will say."""

    time_s: float
    lat: float
    lon: float
    alt_m: float | None
    heading_deg: float | None
    captured_at_ms: int


def plan_frames(
    points: Sequence[GpsPoint],
    *,
    distance_m: float,
    start_epoch_s: float,
    duration_s: float | None = None,
    max_frames: int,
) -> list[FramePlan]:
    """The frames to take along a GPS track.

    Args:
        points: the fixes in time order (`time_s` = seconds into the video).
        distance_m: metres between frames.
        start_epoch_s: UTC Unix seconds of video time 0, used for fixes without their own time.
        duration_s: the video length; fixes after it are ignored (None = no limit).
        max_frames: at most this many frames (the rest of the track is dropped).

    Returns:
        Frames in time order; empty when there is no usable fix.
    """
    usable = _usable(points, duration_s)
    if not usable:
        return []
    times = np.array([p.time_s for p in usable])
    lats = np.array([p.lat for p in usable])
    lons = np.array([p.lon for p in usable])
    alts = [p.alt_m for p in usable]
    epochs = np.array([p.epoch_s if p.epoch_s is not None else start_epoch_s + p.time_s
                       for p in usable])
    steps = [haversine_m(lats[k], lons[k], lats[k + 1], lons[k + 1])
             for k in range(len(usable) - 1)]
    along = np.concatenate(([0.0], np.cumsum(steps)))
    total = float(along[-1])
    count = min(max_frames, int(total // distance_m) + 1)
    plans: list[FramePlan] = []
    for k in range(count):
        s = k * distance_m
        i, f = _segment(along, s)
        lat, lon = _lerp(lats, i, f), _lerp(lons, i, f)
        behind = _position(along, lats, lons, max(0.0, s - distance_m / 2))
        ahead = _position(along, lats, lons, min(total, s + distance_m / 2))
        heading = bearing_deg(*behind, *ahead) if behind != ahead else None
        plans.append(FramePlan(
            time_s=_lerp(times, i, f), lat=lat, lon=lon, alt_m=_lerp_optional(alts, i, f),
            heading_deg=heading, captured_at_ms=int(round(_lerp(epochs, i, f) * 1000)),
        ))
    return plans


def _usable(points: Sequence[GpsPoint], duration_s: float | None) -> list[GpsPoint]:
    """Fixes inside the video, strictly increasing in time (repeated times keep the first)."""
    out: list[GpsPoint] = []
    for p in sorted(points, key=lambda q: q.time_s):
        if not math.isfinite(p.time_s) or p.time_s < 0:
            continue
        if duration_s is not None and p.time_s > duration_s:
            break
        if out and p.time_s <= out[-1].time_s:
            continue
        out.append(p)
    return out


def _segment(along: np.ndarray, s: float) -> tuple[int, float]:
    """(i, f): distance `s` lies fraction f of the way from fix i to fix i + 1."""
    if len(along) == 1:
        return 0, 0.0
    i = int(np.searchsorted(along, s, side="right")) - 1
    i = min(max(i, 0), len(along) - 2)
    span = along[i + 1] - along[i]
    f = (s - along[i]) / span if span > 0 else 0.0
    return i, min(max(float(f), 0.0), 1.0)


def _lerp(values: np.ndarray, i: int, f: float) -> float:
    if f == 0.0 or i + 1 >= len(values):
        return float(values[i])
    return float(values[i] + (values[i + 1] - values[i]) * f)


def _lerp_optional(values: list[float | None], i: int, f: float) -> float | None:
    a = values[i]
    b = values[i + 1] if i + 1 < len(values) else a
    if a is None or b is None:
        return a if f < 0.5 else b
    return a + (b - a) * f


def _position(along: np.ndarray, lats: np.ndarray, lons: np.ndarray, s: float
              ) -> tuple[float, float]:
    i, f = _segment(along, s)
    return _lerp(lats, i, f), _lerp(lons, i, f)
