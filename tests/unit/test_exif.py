"""Tests of wayview.ingest.exif: what a photo's EXIF, XMP and MAP* description yield."""

from __future__ import annotations

import io
import json
import struct
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import piexif  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tests.helpers_jpeg import make_jpeg

from wayview.errors import InvalidInput
from wayview.ingest.exif import PhotoMetadata, read_photo_metadata

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared").resolve()
MT_SAMPLES = SHARED / "data" / "mapillary_tools_samples"
LUND = SHARED / "data" / "opensfm_lund"
T0 = datetime(2024, 5, 14, 9, 30, 12, 345_000, tzinfo=UTC)
T0_MS = 1715679012345


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _reason(data: bytes) -> str:
    with pytest.raises(InvalidInput) as info:
        read_photo_metadata(data)
    return info.value.message


def _with_app1(payload: bytes, jpeg: bytes) -> bytes:
    """`jpeg` with one more APP1 segment right after SOI."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def _plain_jpeg(width: int = 32, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"shared sample data not available: {path} (the `shared` folder beside the repo)"
        )
    return path


# -- standard EXIF ------------------------------------------------------------------------------


def test_exif_reads_position_time_heading_camera() -> None:
    meta = read_photo_metadata(
        make_jpeg(width=80, height=60, lat=52.52, lon=13.405, heading_deg=45.5, altitude_m=35.2)
    )
    assert meta.lat == pytest.approx(52.52, abs=1e-7)
    assert meta.lon == pytest.approx(13.405, abs=1e-7)
    assert meta.captured_at_ms == T0_MS
    assert meta.compass_angle_deg == pytest.approx(45.5)
    assert meta.altitude_m == pytest.approx(35.2)
    assert (meta.make, meta.model) == ("TestMake", "TestModel")
    assert (meta.width, meta.height) == (80, 60)
    assert meta.exif_orientation == 1
    assert (meta.camera_type, meta.is_pano, meta.camera_parameters) == ("perspective", False, None)


def test_exif_south_and_west_refs_give_negative_coordinates() -> None:
    meta = read_photo_metadata(make_jpeg(lat=-33.8688, lon=-70.6693))
    assert meta.lat == pytest.approx(-33.8688, abs=1e-7)
    assert meta.lon == pytest.approx(-70.6693, abs=1e-7)


def test_exif_altitude_below_sea_level_is_negative() -> None:
    assert read_photo_metadata(make_jpeg(altitude_m=-28.5)).altitude_m == pytest.approx(-28.5)


def test_exif_datetime_with_offset_is_converted_to_utc() -> None:
    local = T0.astimezone(timezone(timedelta(hours=2)))
    assert read_photo_metadata(make_jpeg(captured_at=local)).captured_at_ms == T0_MS


def test_exif_datetime_without_offset_is_taken_as_utc() -> None:
    naive = datetime(2024, 5, 14, 9, 30, 12, 345_000)
    assert read_photo_metadata(make_jpeg(captured_at=naive)).captured_at_ms == T0_MS


def test_exif_subseconds_are_kept() -> None:
    moment = datetime(2024, 5, 14, 9, 30, 12, 7_000, tzinfo=UTC)
    assert read_photo_metadata(make_jpeg(captured_at=moment)).captured_at_ms == _ms(moment)


def test_exif_gps_timestamp_wins_over_datetime_original() -> None:
    # As mapillary_tools does (exif_read.py): the GPS clock is UTC by definition, a camera's
    # local clock is not. Here the camera clock claims UTC but is 2 h off.
    data = make_jpeg(captured_at=T0, gps_time=True)
    exif = piexif.load(data)
    exif["Exif"][piexif.ExifIFD.DateTimeOriginal] = b"2024:05:14 11:30:12"
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), data, out)
    assert read_photo_metadata(out.getvalue()).captured_at_ms == T0_MS


def test_exif_gps_timestamp_is_used_without_datetime_original() -> None:
    data = make_jpeg(captured_at=T0, gps_time=True)
    exif = piexif.load(data)
    del exif["Exif"][piexif.ExifIFD.DateTimeOriginal]
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), data, out)
    assert read_photo_metadata(out.getvalue()).captured_at_ms == T0_MS


@pytest.mark.parametrize(("written", "expected"), [(0.0, 0.0), (360.0, 0.0), (359.99, 359.99)])
def test_exif_heading_is_normalised_to_0_360(written: float, expected: float) -> None:
    meta = read_photo_metadata(make_jpeg(heading_deg=written))
    assert meta.compass_angle_deg == pytest.approx(expected)
    assert 0 <= (meta.compass_angle_deg or 0) < 360


def test_exif_heading_falls_back_to_gps_track() -> None:
    data = make_jpeg(heading_deg=None)
    exif = piexif.load(data)
    exif["GPS"][piexif.GPSIFD.GPSTrack] = (27089, 100)
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), data, out)
    assert read_photo_metadata(out.getvalue()).compass_angle_deg == pytest.approx(270.89)


def test_exif_without_heading_has_none() -> None:
    assert read_photo_metadata(make_jpeg(heading_deg=None)).compass_angle_deg is None


def _with_gps(data: bytes, **tags: object) -> bytes:
    exif = piexif.load(data)
    for name, value in tags.items():
        exif["GPS"][getattr(piexif.GPSIFD, name)] = value
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), data, out)
    return out.getvalue()


def test_exif_zero_denominator_position_is_no_position() -> None:
    data = _with_gps(make_jpeg(), GPSLatitude=((55, 0), (0, 1), (0, 1)))
    assert _reason(data) == "no GPS position"


def test_exif_out_of_range_position_is_no_position() -> None:
    data = _with_gps(make_jpeg(), GPSLatitude=((95, 1), (0, 1), (0, 1)))
    assert _reason(data) == "no GPS position"


def test_exif_null_island_is_no_position() -> None:
    data = _with_gps(make_jpeg(), GPSLatitude=((0, 1), (0, 1), (0, 1)))
    data = _with_gps(data, GPSLongitude=((0, 1), (0, 1), (0, 1)))
    assert _reason(data) == "no GPS position"


def test_exif_without_gps_is_rejected() -> None:
    assert _reason(make_jpeg(lat=None, lon=None)) == "no GPS position"


def test_exif_without_capture_time_is_rejected() -> None:
    assert _reason(make_jpeg(captured_at=None)) == "no capture time"


def test_exif_invalid_date_is_no_capture_time() -> None:
    data = make_jpeg()
    exif = piexif.load(data)
    exif["Exif"][piexif.ExifIFD.DateTimeOriginal] = b"0000:00:00 00:00:00"
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), data, out)
    assert _reason(out.getvalue()) == "no capture time"


def test_exif_make_and_model_are_stripped_of_nuls_and_spaces() -> None:
    meta = read_photo_metadata(make_jpeg(make="  Canon\x00\x00", model="EOS R\x00 "))
    assert (meta.make, meta.model) == ("Canon", "EOS R")


def test_exif_blank_make_is_none() -> None:
    assert read_photo_metadata(make_jpeg(make="   ")).make is None


@pytest.mark.parametrize(("written", "expected"), [(None, 1), (6, 6), (8, 8), (9, 1), (0, 1)])
def test_exif_orientation_defaults_to_1(written: int | None, expected: int) -> None:
    assert read_photo_metadata(make_jpeg(orientation=written)).exif_orientation == expected


def test_exif_size_comes_from_the_pixels_not_the_tags() -> None:
    data = make_jpeg(width=40, height=30, orientation=6)
    exif = piexif.load(data)
    exif["Exif"][piexif.ExifIFD.PixelXDimension] = 4000
    exif["Exif"][piexif.ExifIFD.PixelYDimension] = 3000
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), data, out)
    meta = read_photo_metadata(out.getvalue())
    assert (meta.width, meta.height) == (40, 30)  # stored grid, rotation not applied


def test_exif_focal_length_35mm_gives_normalised_focal() -> None:
    meta = read_photo_metadata(make_jpeg(focal_35mm=27))
    assert meta.camera_parameters == pytest.approx((27 / 36, 0.0, 0.0))


def test_exif_content_sha256_is_the_file_hash() -> None:
    import hashlib

    data = make_jpeg()
    assert read_photo_metadata(data).content_sha256 == hashlib.sha256(data).hexdigest()


# -- XMP ----------------------------------------------------------------------------------------

_XMP_HEAD = (
    "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
    "xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
)
_XMP_TAIL = "</rdf:RDF></x:xmpmeta>"
_GPANO_NS = "xmlns:GPano='http://ns.google.com/photos/1.0/panorama/'"


def _xmp(description: str) -> bytes:
    return (_XMP_HEAD + description + _XMP_TAIL).encode()


def test_exif_gpano_attribute_makes_a_spherical_pano() -> None:
    meta = read_photo_metadata(make_jpeg(width=128, height=64, gpano=True, focal_35mm=20))
    assert (meta.camera_type, meta.is_pano, meta.camera_parameters) == ("spherical", True, None)


def test_exif_gpano_element_form_makes_a_spherical_pano() -> None:
    xmp = _xmp(
        f"<rdf:Description rdf:about='' {_GPANO_NS}>"
        "<GPano:ProjectionType>equirectangular</GPano:ProjectionType></rdf:Description>"
    )
    assert read_photo_metadata(make_jpeg(xmp=xmp)).camera_type == "spherical"


def test_exif_gpano_in_malformed_xml_is_still_found() -> None:
    xmp = b"<x:xmpmeta><rdf:Description GPano:ProjectionType='equirectangular'><oops></x:xmpmeta>"
    assert read_photo_metadata(make_jpeg(xmp=xmp)).is_pano


def test_exif_gpano_full_pano_size_without_projection_is_spherical() -> None:
    xmp = _xmp(
        f"<rdf:Description rdf:about='' {_GPANO_NS} "
        "GPano:FullPanoWidthPixels='8000' GPano:FullPanoHeightPixels='4000'/>"
    )
    assert read_photo_metadata(make_jpeg(xmp=xmp)).is_pano


def test_exif_gpano_other_projection_is_perspective() -> None:
    xmp = _xmp(f"<rdf:Description rdf:about='' {_GPANO_NS} GPano:ProjectionType='cylindrical'/>")
    assert read_photo_metadata(make_jpeg(xmp=xmp)).camera_type == "perspective"


def test_exif_two_to_one_aspect_alone_is_not_a_pano() -> None:
    meta = read_photo_metadata(make_jpeg(width=128, height=64))
    assert (meta.camera_type, meta.is_pano) == ("perspective", False)


def test_exif_xmp_entities_are_never_expanded() -> None:
    xmp = (
        b'<!DOCTYPE x [<!ENTITY a "equirectangular">]>'
        b"<x:xmpmeta><rdf:Description GPano:ProjectionType='&a;'/></x:xmpmeta>"
    )
    assert not read_photo_metadata(make_jpeg(xmp=xmp)).is_pano


def test_exif_xmp_gps_is_used_when_exif_has_none() -> None:
    xmp = _xmp(
        "<rdf:Description rdf:about='' xmlns:exif='http://ns.adobe.com/exif/1.0/' "
        "exif:GPSLatitude='0,4.21601S' exif:GPSLongitude='34,22.91611E' "
        "exif:GPSAltitude='136169/100' exif:GPSAltitudeRef='1' exif:GPSImgDirection='1763/10'/>"
    )
    meta = read_photo_metadata(make_jpeg(lat=None, lon=None, heading_deg=None, xmp=xmp))
    assert meta.lat == pytest.approx(-0.0702668, abs=1e-7)
    assert meta.lon == pytest.approx(34.3819352, abs=1e-7)
    assert meta.altitude_m == pytest.approx(-1361.69)
    assert meta.compass_angle_deg == pytest.approx(176.3)


def test_exif_xmp_gps_with_seconds_and_element_form() -> None:
    xmp = _xmp(
        "<rdf:Description rdf:about='' xmlns:exif='http://ns.adobe.com/exif/1.0/'>"
        "<exif:GPSLatitude>55,41,53.4N</exif:GPSLatitude>"
        "<exif:GPSLongitude>13,11,43.4W</exif:GPSLongitude></rdf:Description>"
    )
    meta = read_photo_metadata(make_jpeg(lat=None, lon=None, xmp=xmp))
    assert meta.lat == pytest.approx(55 + 41 / 60 + 53.4 / 3600)
    assert meta.lon == pytest.approx(-(13 + 11 / 60 + 43.4 / 3600))


# -- mapillary_tools description (spec §8.5) ------------------------------------------------------

MAP_DESC = {
    "MAPAltitude": 35.0,
    "MAPCaptureTime": "2021_05_01_10_00_04_500",
    "MAPCompassHeading": {"MagneticHeading": 40.0, "TrueHeading": 45.0},
    "MAPDeviceMake": "DescMake",
    "MAPDeviceModel": "DescModel",
    "MAPFilename": "img02.jpg",
    "MAPLatitude": 52.5201,
    "MAPLongitude": 13.4051,
    "MAPOrientation": 3,
}


def test_exif_map_description_wins_over_exif() -> None:
    meta = read_photo_metadata(make_jpeg(lat=1.0, lon=2.0, map_description=MAP_DESC))
    assert (meta.lat, meta.lon) == (52.5201, 13.4051)
    assert meta.captured_at_ms == _ms(datetime(2021, 5, 1, 10, 0, 4, 500_000, tzinfo=UTC))
    assert meta.compass_angle_deg == 45.0
    assert meta.altitude_m == 35.0
    assert (meta.make, meta.model, meta.exif_orientation) == ("DescMake", "DescModel", 3)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("2021_05_01_10_00_04_5", 500_000),
        ("2021_05_01_10_00_04_05", 50_000),
        ("2021_05_01_10_00_04_500", 500_000),
        ("2021_05_01_10_00_04_5001", 500_100),
        ("2021_05_01_10_00_04_123456", 123_456),
        ("2021_05_01_10_00_04", 0),
    ],
)
def test_exif_map_capture_time_fraction_digits(text: str, micros: int) -> None:
    meta = read_photo_metadata(make_jpeg(map_description={**MAP_DESC, "MAPCaptureTime": text}))
    expected = datetime(2021, 5, 1, 10, 0, 4, micros, tzinfo=UTC)
    assert meta.captured_at_ms == int(expected.timestamp() * 1_000_000) // 1000


def test_exif_map_heading_falls_back_to_magnetic() -> None:
    desc = {**MAP_DESC, "MAPCompassHeading": {"MagneticHeading": 400.0}}
    assert read_photo_metadata(make_jpeg(map_description=desc)).compass_angle_deg == 40.0


def test_exif_map_values_as_strings_are_accepted() -> None:
    desc = {**MAP_DESC, "MAPLatitude": "55.698167", "MAPLongitude": "13.195389"}
    meta = read_photo_metadata(make_jpeg(map_description=desc))
    assert (meta.lat, meta.lon) == (55.698167, 13.195389)


def test_exif_invalid_map_fields_fall_back_to_exif() -> None:
    desc = {**MAP_DESC, "MAPLatitude": "north", "MAPCaptureTime": "yesterday"}
    meta = read_photo_metadata(make_jpeg(lat=10.0, lon=20.0, map_description=desc))
    assert meta.lat == pytest.approx(10.0)
    assert meta.captured_at_ms == T0_MS
    assert meta.make == "DescMake"


@pytest.mark.parametrize(
    "description",
    [b'{"key_list": [1, 2], "key_string": "one"}', b"{not json", b"[1, 2]", b" " * 31],
)
def test_exif_other_descriptions_are_ignored(description: bytes) -> None:
    meta = read_photo_metadata(make_jpeg(lat=10.0, lon=20.0, description=description))
    assert (meta.lat, meta.captured_at_ms) == (pytest.approx(10.0), T0_MS)


# -- garbage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"\xff\xd8", b"GIF89a" + b"\x00" * 20],
)
def test_exif_non_jpeg_is_not_a_jpeg(data: bytes) -> None:
    assert _reason(data) == "not a JPEG"


def test_exif_png_file_is_not_a_jpeg() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    assert _reason(buffer.getvalue()) == "not a JPEG"


def test_exif_unreadable_exif_block_is_reported_as_corrupt_exif() -> None:
    data = _with_app1(b"Exif\x00\x00II*\x00\xff\xff\xff\x7f", _plain_jpeg())
    assert _reason(data).startswith("corrupt EXIF: ")


def test_exif_unreadable_exif_with_xmp_position_still_reads() -> None:
    xmp = _xmp(
        "<rdf:Description rdf:about='' xmlns:exif='http://ns.adobe.com/exif/1.0/' "
        "exif:GPSLatitude='10,30N' exif:GPSLongitude='20,15E' "
        "exif:DateTimeOriginal='2021-07-15T15:37:30+10:00'/>"
    )
    data = _with_app1(b"Exif\x00\x00MM\x00*\x7f\xff\xff\xff", make_jpeg(lat=None, xmp=xmp))
    meta = read_photo_metadata(data)
    assert (meta.lat, meta.lon) == (10.5, 20.25)
    assert meta.captured_at_ms == _ms(datetime(2021, 7, 15, 5, 37, 30, tzinfo=UTC))


def test_exif_huge_value_count_is_skipped_quickly() -> None:
    # A 4-byte count of 2^28 SHORTs: piexif builds a 256 MB struct format and takes ~20 s.
    entry = struct.pack("<HHLL", 0x0112, 3, 0x1000_0000, 8)
    tiff = b"II*\x00" + struct.pack("<L", 8) + struct.pack("<H", 1) + entry + b"\x00" * 4
    started = time.perf_counter()
    reason = _reason(_with_app1(b"Exif\x00\x00" + tiff, _plain_jpeg()))
    assert reason == "no GPS position"
    assert time.perf_counter() - started < 1.0


_SMALL_JPEG = make_jpeg(map_description=MAP_DESC, gpano=True)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=2000))
def test_exif_random_bytes_raise_only_invalid_input(data: bytes) -> None:
    for candidate in (data, b"\xff\xd8\xff" + data, b"\xff\xd8\xff\xe1" + data):
        try:
            read_photo_metadata(candidate)
        except InvalidInput:
            pass


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(_SMALL_JPEG)))
def test_exif_truncated_jpeg_raises_only_invalid_input(cut: int) -> None:
    try:
        read_photo_metadata(_SMALL_JPEG[:cut])
    except InvalidInput:
        pass


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1200), st.integers(0, 255)), min_size=1, max_size=8))
def test_exif_corrupted_header_raises_only_invalid_input(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_SMALL_JPEG)
    for offset, value in edits:
        data[offset % len(data)] = value
    try:
        meta = read_photo_metadata(bytes(data))
    except InvalidInput:
        return
    assert isinstance(meta, PhotoMetadata)
    assert -90 <= meta.lat <= 90 and -180 <= meta.lon <= 180
    assert meta.compass_angle_deg is None or 0 <= meta.compass_angle_deg < 360


# -- shared sample files ------------------------------------------------------------------------


def _samples() -> list[Path]:
    folders = [MT_SAMPLES / "exif_edge_cases", MT_SAMPLES / "images"]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.iterdir())


@pytest.mark.parametrize("name", [p.name for p in _samples()] or ["(shared data absent)"])
def test_exif_every_sample_gives_metadata_or_a_clean_error(name: str) -> None:
    paths = [p for p in _samples() if p.name == name]
    if not paths:
        pytest.skip(f"shared sample data not available under {MT_SAMPLES}")
    try:
        meta = read_photo_metadata(paths[0].read_bytes())
    except InvalidInput as exc:
        assert exc.message in ("no GPS position", "no capture time", "not a JPEG") or (
            exc.message.startswith(("corrupt EXIF: ", "corrupt JPEG: "))
        )
        return
    assert -90 <= meta.lat <= 90 and -180 <= meta.lon <= 180
    assert meta.width > 0 and meta.height > 0


def test_exif_sony_samples_match_the_manifest() -> None:
    manifest = json.loads(_require(MT_SAMPLES / "manifest.json").read_text())
    for entry in manifest["images"]:
        meta = read_photo_metadata((MT_SAMPLES / entry["file"]).read_bytes())
        assert meta.lat == pytest.approx(entry["lat"], abs=1e-7), entry["file"]
        assert meta.lon == pytest.approx(entry["lon"], abs=1e-7)
        assert meta.altitude_m == pytest.approx(entry["altitude"])
        # GPS date/time stamps (UTC), not the camera's local DateTimeOriginal
        assert meta.captured_at_ms == entry["captured_at_ms"]
        # GPSTrack: no GPSImgDirection in these files
        assert meta.compass_angle_deg == pytest.approx(entry["compass_angle"])
        assert (meta.make, meta.model) == (entry["make"], entry["model"])
        assert (meta.width, meta.height) == (entry["width"], entry["height"])
        assert meta.exif_orientation == entry["exif_orientation"]
        assert meta.content_sha256 == entry["sha256"]


def test_exif_adobe_coords_sample_reads_xmp_gps_and_gpano() -> None:
    # Expected values as in mapillary_tools tests/integration (test_parse_adobe_coordinates).
    path = _require(MT_SAMPLES / "exif_edge_cases" / "adobe_coords.jpg")
    meta = read_photo_metadata(path.read_bytes())
    assert meta.lat == pytest.approx(-0.0702668, abs=1e-7)
    assert meta.lon == pytest.approx(34.3819352, abs=1e-7)
    assert meta.captured_at_ms == _ms(datetime(2019, 7, 16, 10, 26, 11, tzinfo=UTC))
    assert (meta.make, meta.model) == ("SAMSUNG", "SM-C200")
    assert (meta.camera_type, meta.is_pano) == ("spherical", True)


def test_exif_test_exif_sample_matches_mapillary_tools() -> None:
    # mapillary_tools tests/unit/test_exifread.py: GPS date/time 2011-07-15 09:14:39Z wins.
    path = _require(MT_SAMPLES / "exif_edge_cases" / "test_exif.jpg")
    meta = read_photo_metadata(path.read_bytes())
    assert meta.captured_at_ms == _ms(datetime(2011, 7, 15, 9, 14, 39, tzinfo=UTC))
    assert meta.lat == pytest.approx(35 + 54 / 60 + 45.06 / 3600)
    assert meta.lon == pytest.approx(14 + 29 / 60 + 55.70 / 3600)
    assert (meta.make, meta.model, meta.exif_orientation) == ("HTC", "Legend", 2)
    assert meta.altitude_m == 69.0
    assert meta.compass_angle_deg == 1.0


@pytest.mark.parametrize(
    "name", ["empty_exif.jpg", "corrupt_exif_wrong_type.jpg", "corrupt_exif_large_thumbnail.jpg"]
)
def test_exif_samples_without_gps_are_rejected(name: str) -> None:
    path = _require(MT_SAMPLES / "exif_edge_cases" / name)
    assert _reason(path.read_bytes()) == "no GPS position"


def test_exif_lund_descriptions_match_the_manifest() -> None:
    manifest = json.loads(_require(LUND / "manifest.json").read_text())
    assert len(manifest["images"]) == 29
    for entry in manifest["images"]:
        meta = read_photo_metadata((LUND / entry["file"]).read_bytes())
        assert meta.captured_at_ms == entry["captured_at_ms"], entry["file"]
        assert meta.compass_angle_deg == pytest.approx(entry["compass_angle"])
        assert meta.lat == pytest.approx(entry["lat"], abs=1e-5)
        assert meta.lon == pytest.approx(entry["lon"], abs=1e-5)
        assert (meta.make, meta.model) == ("Apple", "iPhone4,1")
        assert (meta.width, meta.height) == (entry["width"], entry["height"])


def test_exif_positions_carry_no_float_noise():
    # 55°42'7.0908"N, 13°10'42.135"E: naive DMS arithmetic gives 55.701969666666670...
    from tests.helpers_jpeg import make_jpeg

    data = make_jpeg(lat=55.7019697, lon=13.1783708)
    meta = read_photo_metadata(data)
    assert repr(meta.lat) == repr(round(meta.lat, 9))
    assert repr(meta.lon) == repr(round(meta.lon, 9))
