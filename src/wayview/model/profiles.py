"""wayview.model.profiles: what a public profile shows of a user's or an organization's
coverage (issue #18 item 6): counts, length, capture span, extent and latest sequences."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass

from wayview.model.geo import haversine_m

#: (west, south, east, north) in degrees.
BBox = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class LineFigures:
    """What a sequence's row keeps of its public images (maintained by every write that
    changes them: insert, deletion, hiding, corrections, split and merge)."""

    image_count: int
    length_m: float
    last_captured_at_ms: int | None
    bbox: BBox | None


def line_figures(points: Seq[tuple[float, float]], captured_at_ms: Seq[int]) -> LineFigures:
    """Count, length (haversine, through the points in the order given: capture order),
    last capture and extent of a sequence's public images, given as (lon, lat).

    >>> f = line_figures([(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)], [5, 6, 9])
    >>> f.image_count, round(f.length_m), f.last_captured_at_ms, f.bbox
    (3, 222373, 9, (0.0, 0.0, 1.0, 1.0))
    >>> line_figures([], [])
    LineFigures(image_count=0, length_m=0.0, last_captured_at_ms=None, bbox=None)
    """
    if not points:
        return LineFigures(0, 0.0, None, None)
    length_m = sum(haversine_m(a[1], a[0], b[1], b[0])
                   for a, b in zip(points, points[1:], strict=False))
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    return LineFigures(len(points), length_m, max(captured_at_ms),
                       (min(lons), min(lats), max(lons), max(lats)))


@dataclass(frozen=True, slots=True)
class SequenceCoverage:
    """One sequence as a profile lists it: its public images only (hidden ones left out)."""

    id: str
    image_count: int
    #: The first public image in capture order (the sequence's link into the explorer).
    first_image_id: int
    first_captured_at_ms: int
    last_captured_at_ms: int
    #: The line through its images in capture order (haversine, spherical Earth).
    length_m: float
    bbox: BBox
    #: Where it starts: the first image's (lon, lat).
    start: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Coverage:
    """A creator's or an organization's public coverage (`Store.coverage_of`)."""

    image_count: int = 0
    sequence_count: int = 0
    length_m: float = 0.0
    first_captured_at_ms: int | None = None
    last_captured_at_ms: int | None = None
    bbox: BBox | None = None
    #: Sequences by first capture, newest first (at most the `latest` asked for).
    latest: tuple[SequenceCoverage, ...] = ()
    #: Where sequences start (lon, lat), newest first, at most the `starts` asked for: the
    #: profile map draws them below the zoom where the tiles' lines carry creators.
    starts: tuple[tuple[float, float], ...] = ()
