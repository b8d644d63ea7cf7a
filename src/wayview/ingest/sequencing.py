"""wayview.ingest.sequencing: order photos by capture time and cut them into sequences."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wayview.ingest.exif import PhotoMetadata
from wayview.model.geo import EARTH_RADIUS_M, haversine_m

__all__ = ["EARTH_RADIUS_M", "SourcePhoto", "cut_sequences", "haversine_m"]


@dataclass(frozen=True, slots=True)
class SourcePhoto:
    """A photo to sequence: where it came from (a unique name, e.g. its path) and its metadata."""

    source: str
    metadata: PhotoMetadata


def cut_sequences(
    photos: Iterable[SourcePhoto],
    *,
    max_time_gap_s: float,
    max_distance_gap_m: float,
    max_sequence_length: int,
) -> list[list[SourcePhoto]]:
    """Sort photos by capture time (ties by source name) and cut them into sequences.

    A new sequence starts before a photo when, compared with the previous photo, the capture
    time advanced by more than `max_time_gap_s`, the position moved by more than
    `max_distance_gap_m`, or the camera (make, model) differs; and when the current sequence
    already holds `max_sequence_length` photos.

    Args:
        photos: the photos, in any order.
        max_time_gap_s: largest time gap kept inside one sequence, in seconds.
        max_distance_gap_m: largest jump kept inside one sequence, in metres.
        max_sequence_length: most photos in one sequence (at least 1).

    Returns:
        The sequences in capture order, each a non-empty list in capture order.
    """
    if max_sequence_length < 1:
        raise ValueError("max_sequence_length must be at least 1")
    ordered = sorted(photos, key=lambda p: (p.metadata.captured_at_ms, p.source))
    sequences: list[list[SourcePhoto]] = []
    current: list[SourcePhoto] = []
    for photo in ordered:
        if current and (
            len(current) >= max_sequence_length
            or _breaks(current[-1].metadata, photo.metadata, max_time_gap_s, max_distance_gap_m)
        ):
            sequences.append(current)
            current = []
        current.append(photo)
    if current:
        sequences.append(current)
    return sequences


def _breaks(
    previous: PhotoMetadata,
    photo: PhotoMetadata,
    max_time_gap_s: float,
    max_distance_gap_m: float,
) -> bool:
    """Whether `photo` cannot continue the sequence that `previous` ends."""
    if (photo.captured_at_ms - previous.captured_at_ms) / 1000 > max_time_gap_s:
        return True
    if (previous.make, previous.model) != (photo.make, photo.model):
        return True
    distance_m = haversine_m(previous.lat, previous.lon, photo.lat, photo.lon)
    return distance_m > max_distance_gap_m
