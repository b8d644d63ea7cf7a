"""Video ingest: MP4 box reader, CAMM / GPMF / BlackVue tracks, frame planning, JPEG frames."""

from __future__ import annotations

import io
import math
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import shared_path
from tests.helpers_video import (
    add_blackvue_gps,
    add_camm_track,
    box,
    encode_video,
    full_box,
    top_level,
)

from wayview.errors import InvalidInput
from wayview.ingest.exif import read_photo_metadata
from wayview.ingest.sequencing import haversine_m
from wayview.ingest.video import read_telemetry, video_to_frames
from wayview.ingest.video.blackvue import parse_nmea_log
from wayview.ingest.video.gpmf import iter_klv
from wayview.ingest.video.mp4 import read_movie
from wayview.ingest.video.sampling import plan_frames
from wayview.ingest.video.track import GpsPoint

LAT0, LON0 = 55.7047, 13.1910
START_S = 1_619_863_200.0  # 2021-05-01T10:00:00Z
#: degrees of longitude per metre at LAT0
DEG_PER_M = 1 / (111_320 * math.cos(math.radians(LAT0)))


def eastward(seconds: int, speed_m_s: float = 2.0) -> list[tuple[float, float, float, float]]:
    """(time_s, lat, lon, alt) fixes once a second, heading east at `speed_m_s`."""
    return [(float(t), LAT0, LON0 + t * speed_m_s * DEG_PER_M, 20.0 + t) for t in range(seconds)]


@pytest.fixture
def camm_video(tmp_path: Path) -> Path:
    path = tmp_path / "camm.mp4"
    encode_video(path, seconds=10)
    add_camm_track(path, eastward(10))
    return path


def test_camm_type_6_track_with_make_and_model(camm_video: Path):
    telemetry, duration_s, _created = read_telemetry(camm_video)
    assert telemetry.source == "camm"
    assert (telemetry.make, telemetry.model) == ("TestMake", "TestModel")
    assert len(telemetry.points) == 10
    assert duration_s == pytest.approx(10.0, abs=0.2)
    for k, point in enumerate(telemetry.points):
        assert point.time_s == pytest.approx(k)
        assert point.lat == LAT0 and point.lon == pytest.approx(LON0 + 2 * k * DEG_PER_M)
        assert point.alt_m == pytest.approx(20.0 + k)
        assert point.epoch_s == pytest.approx(START_S + k)


def test_camm_type_5_times_follow_the_edit_list(tmp_path: Path):
    path = tmp_path / "mini.mp4"
    encode_video(path, seconds=6)
    add_camm_track(path, eastward(4), kind=5, make=None, model=None, empty_edit_s=1.5)
    telemetry, _duration, _created = read_telemetry(path)
    assert [p.time_s for p in telemetry.points] == pytest.approx([1.5, 2.5, 3.5, 4.5])
    assert all(p.epoch_s is None for p in telemetry.points)
    assert (telemetry.make, telemetry.model) == (None, None)


def test_frames_every_three_metres_carry_position_time_and_heading(camm_video: Path,
                                                                    tmp_path: Path):
    out = tmp_path / "frames"
    out.mkdir()
    result = video_to_frames(camm_video, out, distance_m=3.0, max_frames=100,
                             fallback_epoch_s=0.0)
    # About 18 m of track at 2 m/s: frames at 0, 3, 6, … m
    fixes = eastward(10)
    length = sum(haversine_m(a[1], a[2], b[1], b[2]) for a, b in zip(fixes, fixes[1:], strict=False))
    assert len(result.paths) == int(length // 3) + 1 >= 6
    metas = [read_photo_metadata(p.read_bytes()) for p in result.paths]
    for k, meta in enumerate(metas):
        expected_lon = LON0 + 3 * k * DEG_PER_M
        assert haversine_m(meta.lat, meta.lon, LAT0, expected_lon) < 0.05
        assert meta.captured_at_ms == pytest.approx((START_S + 1.5 * k) * 1000, abs=10)
        assert meta.compass_angle_deg == pytest.approx(90.0, abs=0.5)
        assert (meta.make, meta.model) == ("TestMake", "TestModel")
        assert (meta.width, meta.height) == (64, 48)
    # Frames differ: each is a later picture of the moving bar.
    assert len({p.read_bytes() for p in result.paths}) == len(result.paths)


def test_plan_frames_interpolates_and_stops_at_max_frames():
    points = [GpsPoint(0.0, 0.0, 0.0, None, None), GpsPoint(10.0, 0.0, 0.001, 10.0, None)]
    plans = plan_frames(points, distance_m=10.0, start_epoch_s=1000.0, max_frames=100)
    total = haversine_m(0.0, 0.0, 0.0, 0.001)
    assert len(plans) == int(total // 10) + 1
    assert plans[1].time_s == pytest.approx(10.0 * 10.0 / total)
    assert plans[1].captured_at_ms == round((1000.0 + plans[1].time_s) * 1000)
    assert plans[0].alt_m is None and plans[-1].alt_m == 10.0
    assert len(plan_frames(points, distance_m=10.0, start_epoch_s=0.0, max_frames=3)) == 3
    # A track that never moves gives one frame, with no heading to tell.
    still = [GpsPoint(float(t), 1.0, 1.0) for t in range(5)]
    [only] = plan_frames(still, distance_m=3.0, start_epoch_s=0.0, max_frames=10)
    assert only.heading_deg is None
    assert plan_frames([], distance_m=3.0, start_epoch_s=0.0, max_frames=10) == []


def test_blackvue_nmea_track(tmp_path: Path):
    lines = []
    for k in range(5):
        clock = f"1000{k:02d}.00"
        lon_min = 11.0 + k * 0.001
        body = f"GPRMC,{clock},A,5542.2820,N,013{lon_min:07.4f},E,3.0,90.0,010521,,,A"
        checksum = 0
        for ch in body:
            checksum ^= ord(ch)
        # The camera clock runs 2 h ahead of UTC (local time).
        camera_ms = int((START_S + k + 7200) * 1000)
        lines.append(f"[{camera_ms}]${body}*{checksum:02X}")
    lines.append(f"[{int((START_S + 9 + 7200) * 1000)}]$GPRMC,bad,checksum*00")
    path = tmp_path / "blackvue.mp4"
    encode_video(path, seconds=6)
    add_blackvue_gps(path, "\r\n".join(lines).encode())
    telemetry, _duration, _created = read_telemetry(path, prefer_blackvue=True)
    assert telemetry.source == "blackvue"
    assert (telemetry.make, telemetry.model) == ("BlackVue", "DR900X Plus")
    assert [p.time_s for p in telemetry.points] == pytest.approx([0, 1, 2, 3, 4])
    assert [p.epoch_s for p in telemetry.points] == pytest.approx(
        [START_S + k for k in range(5)])
    assert telemetry.points[0].lat == pytest.approx(55 + 42.282 / 60)
    assert telemetry.points[2].lon == pytest.approx(13 + 11.002 / 60)


def test_nmea_parser_skips_invalid_sentences():
    assert parse_nmea_log(b"[1]$GPRMC,100000.00,V,5542.2820,N,01311.0000,E,,,010521,,,N") == []
    assert parse_nmea_log(b"[1]$GPGGA,100000.00,5542.2820,N,01311.0000,E,0,0,,,M,,M,,") == []
    assert parse_nmea_log(b"garbage\n[x]$GPRMC\n\xff\xfe") == []
    [fix] = parse_nmea_log(b"[5000]$GPGGA,100000.00,5542.2820,N,01311.0000,E,1,8,0.9,35.5,M,,M,,")
    assert fix.alt_m == 35.5 and fix.epoch_s == 5.0  # no RMC: the camera clock is trusted


def test_gopro_gpmf_sample(tmp_path: Path):
    sample = shared_path("data", "gopro_max_sample", "max-heromode.mp4")
    telemetry, duration_s, _created = read_telemetry(sample)
    assert telemetry.source == "gpmf"
    assert (telemetry.make, telemetry.model) == ("GoPro", "GoPro Max")
    assert duration_s == pytest.approx(10.5, abs=0.1)
    first = telemetry.points[0]
    assert first.lat == pytest.approx(33.12677, abs=1e-5)
    assert first.lon == pytest.approx(-117.32734, abs=1e-5)
    assert first.epoch_s == datetime(2019, 11, 18, 23, 45, 14, tzinfo=UTC).timestamp()
    assert len(telemetry.points) > 150
    assert all(a.time_s <= b.time_s for a, b in zip(telemetry.points, telemetry.points[1:], strict=False))
    out = tmp_path / "frames"
    out.mkdir()
    result = video_to_frames(sample, out, distance_m=3.0, max_frames=100, fallback_epoch_s=0)
    assert len(result.paths) >= 3
    meta = read_photo_metadata(result.paths[0].read_bytes())
    assert meta.captured_at_ms == 1_574_120_714_000
    assert (meta.width, meta.height) == (848, 480)


def test_no_gps_track_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "plain.mp4"
    encode_video(path, seconds=2)
    with pytest.raises(InvalidInput, match="no GPS track"):
        read_telemetry(path)
    (tmp_path / "junk.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(InvalidInput):
        read_telemetry(tmp_path / "junk.mp4")


# -- crafted input -----------------------------------------------------------------------------


def moov_with(trak_children: bytes) -> bytes:
    mvhd = full_box(b"mvhd", struct.pack(">IIII", 0, 0, 1000, 1000) + b"\0" * 80)
    return box(b"ftyp", b"isom\0\0\0\0") + box(b"moov", mvhd + box(b"trak", trak_children))


def camm_stbl(*tables: bytes) -> bytes:
    stsd = full_box(b"stsd", struct.pack(">I", 1) + box(b"camm", b"\0" * 8))
    mdhd = full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, 1000, 0, 0, 0))
    return box(b"mdia", mdhd + box(b"minf", box(b"stbl", stsd + b"".join(tables))))


@pytest.mark.parametrize("tables", [
    # stsz claims 4 billion samples in a few bytes
    [full_box(b"stsz", struct.pack(">II", 0, 0xFFFFFFFF))],
    # stsc makes one chunk hold 4 billion samples
    [full_box(b"stsz", struct.pack(">II", 60, 3_000_000)),
     full_box(b"stsc", struct.pack(">IIII", 1, 1, 0xFFFFFFFF, 1)),
     full_box(b"stco", struct.pack(">II", 1, 0)),
     full_box(b"stts", struct.pack(">III", 1, 0xFFFFFFFF, 1))],
    # entry counts larger than their boxes
    [full_box(b"stsz", struct.pack(">II", 0, 1000))],
    [full_box(b"stsz", struct.pack(">II", 60, 1)), full_box(b"stco", struct.pack(">I", 9999))],
])
def test_crafted_sample_tables_fail_fast_and_small(tmp_path: Path, tables: list[bytes]):
    path = tmp_path / "crafted.mp4"
    path.write_bytes(moov_with(camm_stbl(*tables)))
    started = time.perf_counter()
    with path.open("rb") as fh:
        try:
            read_movie(fh, sample_formats=frozenset({b"camm"}))
        except InvalidInput:
            pass
    assert time.perf_counter() - started < 2.0


def test_box_sizes_past_their_parent_and_deep_nesting_are_rejected(tmp_path: Path):
    path = tmp_path / "bad.mp4"
    path.write_bytes(box(b"moov", struct.pack(">I4s", 1 << 30, b"trak")))
    with path.open("rb") as fh, pytest.raises(InvalidInput, match="corrupt MP4"):
        read_movie(fh)
    nested = b""
    for _ in range(40):
        nested = box(b"minf", nested)
    path.write_bytes(box(b"moov", box(b"trak", nested)))
    with path.open("rb") as fh, pytest.raises(InvalidInput, match="nested too deeply"):
        read_movie(fh)
    # A 64-bit size smaller than its header must not loop forever.
    path.write_bytes(struct.pack(">I4sQ", 1, b"moov", 4))
    with path.open("rb") as fh, pytest.raises(InvalidInput):
        read_movie(fh)


def test_klv_reader_stops_at_truncated_entries():
    whole = b"GPSF" + b"L\x04\x00\x01" + struct.pack(">I", 3)
    assert [k.key for k in iter_klv(whole + b"GPS5l\x14\x01\x00" + b"\0" * 10)] == [b"GPSF"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_videos_only_ever_raise_invalid_input(data: st.DataObject):
    blob = _CAMM_FILE_BYTES()
    mutated = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(mutated) // 2, len(mutated)))
    fh = io.BytesIO(bytes(mutated[:cut]))
    try:
        _read_from(fh)
    except InvalidInput:
        pass


_CACHE: dict[str, bytes] = {}


def _CAMM_FILE_BYTES() -> bytes:  # noqa: N802  (a cached constant)
    if "camm" not in _CACHE:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "v.mp4"
            encode_video(path, seconds=2)
            add_camm_track(path, eastward(3))
            _CACHE["camm"] = path.read_bytes()
    return _CACHE["camm"]


def _read_from(fh: io.BytesIO) -> None:
    """read_telemetry's parsing steps on an in-memory file."""
    from wayview.ingest.video.blackvue import read_blackvue
    from wayview.ingest.video.camm import read_camm
    from wayview.ingest.video.gpmf import read_gpmf

    movie = read_movie(fh, sample_formats=frozenset({b"camm", b"gpmd"}))
    read_camm(fh, movie)
    read_gpmf(fh, movie)
    read_blackvue(fh)


def test_the_test_file_has_moov_last():
    assert top_level(_CAMM_FILE_BYTES())[-1][0] == b"moov"
