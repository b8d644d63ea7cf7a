"""wayview.ingest.video.frames: decode planned frames with PyAV and write them as geotagged JPEGs.

Each frame becomes a JPEG whose EXIF carries what the importer reads first: the mapillary_tools
`ImageDescription` JSON (spec §8.5: position, UTC capture time, heading, altitude, camera) plus
the standard GPS position, `Make` and `Model` for other tools. Decoding runs forward through
the video and seeks only across long gaps, so each frame is decoded once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import av.container
import av.error
import av.video
import piexif
from PIL import Image as PILImage

from wayview.errors import InvalidInput
from wayview.ingest.video.sampling import FramePlan

__all__ = ["exif_for_frame", "map_capture_time", "write_frames"]

#: Seek instead of decoding forward when the next frame is this many seconds ahead.
SEEK_GAP_S = 8.0
#: A decoded frame this close before a planned time is taken for it.
TIME_TOLERANCE_S = 0.02
#: Largest frame decoded (pixels).
MAX_FRAME_PIXELS = 100_000_000
JPEG_QUALITY = 90


def map_capture_time(captured_at_ms: int) -> str:
    """`MAPCaptureTime` (UTC `YYYY_MM_DD_HH_MM_SS_fff`) of epoch milliseconds.

    >>> map_capture_time(1_619_863_204_500)
    '2021_05_01_10_00_04_500'
    """
    moment = datetime.fromtimestamp(captured_at_ms / 1000, tz=UTC)
    return moment.strftime("%Y_%m_%d_%H_%M_%S_") + f"{captured_at_ms % 1000:03d}"


def _dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return (degrees, 1), (minutes, 1), (round(seconds * 1_000_000), 1_000_000)


def exif_for_frame(plan: FramePlan, make: str | None, model: str | None) -> bytes:
    """The EXIF block of one frame: MAP* description, GPS, make and model."""
    desc: dict[str, Any] = {
        "MAPLatitude": round(plan.lat, 9),
        "MAPLongitude": round(plan.lon, 9),
        "MAPCaptureTime": map_capture_time(plan.captured_at_ms),
        "MAPOrientation": 1,
    }
    if plan.alt_m is not None:
        desc["MAPAltitude"] = round(plan.alt_m, 3)
    if plan.heading_deg is not None:
        heading = round(plan.heading_deg % 360.0, 3)
        desc["MAPCompassHeading"] = {"TrueHeading": heading, "MagneticHeading": heading}
    zeroth: dict[int, Any] = {}
    if make:
        desc["MAPDeviceMake"] = make
        zeroth[piexif.ImageIFD.Make] = make.encode("utf-8")
    if model:
        desc["MAPDeviceModel"] = model
        zeroth[piexif.ImageIFD.Model] = model.encode("utf-8")
    text = json.dumps(desc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    zeroth[piexif.ImageIFD.ImageDescription] = text.encode("ascii")
    gps: dict[int, Any] = {
        piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
        piexif.GPSIFD.GPSLatitudeRef: b"N" if plan.lat >= 0 else b"S",
        piexif.GPSIFD.GPSLatitude: _dms(plan.lat),
        piexif.GPSIFD.GPSLongitudeRef: b"E" if plan.lon >= 0 else b"W",
        piexif.GPSIFD.GPSLongitude: _dms(plan.lon),
    }
    return bytes(piexif.dump({"0th": zeroth, "Exif": {}, "GPS": gps}))


def write_frames(
    video: Path,
    plans: Sequence[FramePlan],
    out_dir: Path,
    *,
    make: str | None,
    model: str | None,
) -> list[Path]:
    """Write one JPEG per plan (`000000.jpg`, … in plan order) into `out_dir`.

    Plans that fall on a frame already written (a video slower than the plans) and plans past
    the last frame are skipped.

    Raises:
        InvalidInput: the file has no decodable video stream.
    """
    try:
        container = av.open(str(video), mode="r")
    except (av.error.FFmpegError, OSError) as exc:
        raise InvalidInput(f"video cannot be read: {exc}") from exc
    with container:
        if not container.streams.video:
            raise InvalidInput("the file has no video stream")
        stream = container.streams.video[0]
        if (stream.width or 0) * (stream.height or 0) > MAX_FRAME_PIXELS:
            raise InvalidInput("video frames too large")
        stream.thread_type = "AUTO"
        try:
            return _write(container, stream, plans, out_dir, make, model)
        except av.error.FFmpegError as exc:
            raise InvalidInput(f"video cannot be decoded: {exc}") from exc


def _decoded(container: av.container.InputContainer, stream: av.video.VideoStream
             ) -> Iterator[tuple[float, av.VideoFrame]]:
    for frame in container.decode(stream):
        if frame.time is not None:
            yield float(frame.time), frame


def _write(container: av.container.InputContainer, stream: av.video.VideoStream,
           plans: Sequence[FramePlan], out_dir: Path, make: str | None, model: str | None,
           ) -> list[Path]:
    written: list[Path] = []
    frames = _decoded(container, stream)
    current: tuple[float, av.VideoFrame] | None = None
    last_time: float | None = None
    for plan in plans:
        if current is None or plan.time_s - current[0] > SEEK_GAP_S:
            if current is not None and stream.time_base is not None:
                container.seek(int(plan.time_s / stream.time_base), stream=stream,
                               backward=True, any_frame=False)
                frames = _decoded(container, stream)
            current = next(frames, None)
        while current is not None and current[0] < plan.time_s - TIME_TOLERANCE_S:
            current = next(frames, None)
        if current is None:
            break
        if current[0] == last_time:
            continue
        last_time = current[0]
        path = out_dir / f"{len(written):06d}.jpg"
        image = PILImage.fromarray(current[1].to_ndarray(format="rgb24"))
        image.save(path, "JPEG", quality=JPEG_QUALITY, exif=exif_for_frame(plan, make, model))
        written.append(path)
    return written
