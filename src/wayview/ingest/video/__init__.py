"""wayview.ingest.video: turn an uploaded video into geotagged JPEG frames (spec §8.4–8.5).

    read_telemetry(path)        GPS track + camera from CAMM, GoPro GPMF or BlackVue NMEA
    video_to_frames(path, …)    frames every N metres along the track, as JPEGs in a folder

The parsers are our own (`mp4`, `camm`, `gpmf`, `blackvue`): bounded and defensive, since the
file comes from the network. Decoding uses PyAV (FFmpeg inside its wheels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wayview.errors import InvalidInput
from wayview.ingest.video.blackvue import read_blackvue
from wayview.ingest.video.camm import CAMM_FORMAT, read_camm
from wayview.ingest.video.frames import write_frames
from wayview.ingest.video.gpmf import GPMF_FORMAT, read_gpmf
from wayview.ingest.video.mp4 import read_movie
from wayview.ingest.video.sampling import plan_frames
from wayview.ingest.video.track import GpsPoint, VideoTelemetry

__all__ = ["GpsPoint", "VideoFrames", "VideoTelemetry", "read_telemetry", "video_to_frames"]


@dataclass(frozen=True, slots=True)
class VideoFrames:
    """What `video_to_frames` wrote: the JPEG paths in time order and where the track came
    from."""

    paths: tuple[Path, ...]
    telemetry: VideoTelemetry


def read_telemetry(path: Path, *, prefer_blackvue: bool = False) -> tuple[VideoTelemetry, float,
                                                                            float | None]:
    """The GPS track of a video, the movie duration (s) and the UTC time of movie time 0
    (Unix s or None).

    CAMM comes first (what mapillary_tools uploads), then GoPro GPMF, then BlackVue NMEA
    (first when `prefer_blackvue`, for `mly_blackvue_video`). When the chosen track has no UTC
    time of its own (CAMM type 5, which mapillary_tools 0.13 writes), the clock comes from
    another track that has one (a GoPro's GPMF `GPSU`, kept in the re-muxed upload), and only
    then from the movie header, which many cameras write in local time.

    Raises:
        InvalidInput: not an MP4, or no GPS fix in any known track.
    """
    with path.open("rb") as fh:
        movie = read_movie(fh, sample_formats=frozenset({CAMM_FORMAT, GPMF_FORMAT}))
        readers: list[Callable[[], VideoTelemetry | None]] = [
            lambda: read_camm(fh, movie), lambda: read_gpmf(fh, movie), lambda: read_blackvue(fh)]
        if prefer_blackvue:
            readers.insert(0, readers.pop())
        for k, reader in enumerate(readers):
            telemetry = reader()
            if telemetry is None or not telemetry.points:
                continue
            start = movie.creation_time_s
            if not any(p.epoch_s is not None for p in telemetry.points):
                for other in readers[k + 1:]:
                    clock = _clock_of(other())
                    if clock is not None:
                        start = clock
                        break
            return telemetry, movie.duration_s, start
    raise InvalidInput("no GPS track in the video (CAMM, GoPro GPMF or BlackVue NMEA)")


def _clock_of(telemetry: VideoTelemetry | None) -> float | None:
    """UTC Unix seconds of movie time 0 from a track's timed fixes (median offset), or None.

    >>> from wayview.ingest.video.track import GpsPoint as P
    >>> _clock_of(VideoTelemetry((P(1.0, 1, 1, None, 101.0), P(2.0, 1, 1, None, 102.0)), "x"))
    100.0
    >>> _clock_of(VideoTelemetry((P(1.0, 1, 1),), "x")) is None
    True
    """
    if telemetry is None:
        return None
    offsets = sorted(p.epoch_s - p.time_s for p in telemetry.points if p.epoch_s is not None)
    return offsets[len(offsets) // 2] if offsets else None


def video_to_frames(
    path: Path,
    out_dir: Path,
    *,
    distance_m: float,
    max_frames: int,
    fallback_epoch_s: float,
    prefer_blackvue: bool = False,
) -> VideoFrames:
    """Write the video's frames every `distance_m` metres into `out_dir` as geotagged JPEGs.

    Args:
        path: the MP4 file.
        out_dir: an existing, private folder.
        distance_m: metres between frames.
        max_frames: at most this many frames.
        fallback_epoch_s: the capture time of video time 0 when neither the track nor the
            movie header gives one (e.g. the upload time).
        prefer_blackvue: read BlackVue NMEA before CAMM/GPMF.

    Raises:
        InvalidInput: no GPS track, no decodable video, or no frame could be taken.
    """
    telemetry, duration_s, start_s = read_telemetry(path, prefer_blackvue=prefer_blackvue)
    plans = plan_frames(
        telemetry.points, distance_m=distance_m,
        start_epoch_s=start_s if start_s is not None else fallback_epoch_s,
        duration_s=duration_s or None, max_frames=max_frames,
    )
    if not plans:
        raise InvalidInput("no usable GPS fix inside the video")
    paths = write_frames(path, plans, out_dir, make=telemetry.make, model=telemetry.model)
    if not paths:
        raise InvalidInput("no frame could be decoded at the GPS fixes")
    return VideoFrames(tuple(paths), telemetry)
