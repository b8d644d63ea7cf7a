"""Tests of wayview.fixtures: the synthetic JPEG generator round-trips its metadata."""

from __future__ import annotations

import io
import json
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import piexif
import pytest
from PIL import Image as PILImage

from wayview.fixtures import (
    XMP_HEADER,
    Overlay,
    build_map_description,
    extract_xmp,
    make_jpeg,
    write_jpeg,
)

CEST = timezone(timedelta(hours=2))
CAPTURED_AT = datetime(2024, 5, 14, 9, 30, 12, 345_000, tzinfo=CEST)
GPANO = "{http://ns.google.com/photos/1.0/panorama/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


def _rational(value: tuple[int, int]) -> Fraction:
    return Fraction(value[0], value[1])


def _dms_to_deg(dms: tuple[tuple[int, int], ...]) -> float:
    d, m, s = (_rational(part) for part in dms)
    return float(d + m / 60 + s / 3600)


def _make(**overrides: object) -> bytes:
    kwargs: dict[str, object] = {
        "width": 320,
        "height": 240,
        "lat": 55.7047123,
        "lon": 13.1910456,
        "captured_at": CAPTURED_AT,
        "compass_deg": 123.45,
        "altitude_m": 48.25,
        "make": "Apple",
        "model": "iPhone 13",
        "orientation": 1,
        "focal_35mm": 26,
        "seed": 3,
    }
    kwargs.update(overrides)
    return make_jpeg(**kwargs)  # type: ignore[arg-type]


def test_make_jpeg_is_a_jpeg_of_the_requested_size() -> None:
    data = _make(width=400, height=300)
    with PILImage.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        assert img.size == (400, 300)
        assert img.mode == "RGB"


def test_make_jpeg_exif_round_trips_every_value() -> None:
    exif = piexif.load(_make(orientation=6))
    zeroth, sub, gps = exif["0th"], exif["Exif"], exif["GPS"]
    assert zeroth[piexif.ImageIFD.Make] == b"Apple"
    assert zeroth[piexif.ImageIFD.Model] == b"iPhone 13"
    assert zeroth[piexif.ImageIFD.Orientation] == 6
    assert piexif.ImageIFD.ImageDescription not in zeroth
    assert sub[piexif.ExifIFD.DateTimeOriginal] == b"2024:05:14 09:30:12"
    assert sub[piexif.ExifIFD.SubSecTimeOriginal] == b"345"
    assert sub[piexif.ExifIFD.OffsetTimeOriginal] == b"+02:00"
    assert sub[piexif.ExifIFD.FocalLengthIn35mmFilm] == 26
    assert gps[piexif.GPSIFD.GPSLatitudeRef] == b"N"
    assert gps[piexif.GPSIFD.GPSLongitudeRef] == b"E"
    assert _dms_to_deg(gps[piexif.GPSIFD.GPSLatitude]) == pytest.approx(55.7047123, abs=1e-8)
    assert _dms_to_deg(gps[piexif.GPSIFD.GPSLongitude]) == pytest.approx(13.1910456, abs=1e-8)
    assert gps[piexif.GPSIFD.GPSAltitudeRef] == 0
    assert float(_rational(gps[piexif.GPSIFD.GPSAltitude])) == pytest.approx(48.25)
    assert gps[piexif.GPSIFD.GPSImgDirectionRef] == b"T"
    assert float(_rational(gps[piexif.GPSIFD.GPSImgDirection])) == pytest.approx(123.45)
    # GPS stamps are UTC
    assert gps[piexif.GPSIFD.GPSDateStamp] == b"2024:05:14"
    h, m, s = (_rational(part) for part in gps[piexif.GPSIFD.GPSTimeStamp])
    assert (h, m, s) == (7, 30, Fraction(12345, 1000))


def test_make_jpeg_southern_western_and_below_sea_level() -> None:
    gps = piexif.load(_make(lat=-33.5, lon=-70.25, altitude_m=-3.5))["GPS"]
    assert gps[piexif.GPSIFD.GPSLatitudeRef] == b"S"
    assert gps[piexif.GPSIFD.GPSLongitudeRef] == b"W"
    assert _dms_to_deg(gps[piexif.GPSIFD.GPSLatitude]) == pytest.approx(33.5)
    assert _dms_to_deg(gps[piexif.GPSIFD.GPSLongitude]) == pytest.approx(70.25)
    assert gps[piexif.GPSIFD.GPSAltitudeRef] == 1
    assert float(_rational(gps[piexif.GPSIFD.GPSAltitude])) == pytest.approx(3.5)


def test_make_jpeg_optional_values_are_omitted() -> None:
    exif = piexif.load(_make(compass_deg=None, altitude_m=None, focal_35mm=None))
    assert piexif.GPSIFD.GPSImgDirection not in exif["GPS"]
    assert piexif.GPSIFD.GPSAltitude not in exif["GPS"]
    assert piexif.ExifIFD.FocalLengthIn35mmFilm not in exif["Exif"]


def test_make_jpeg_utc_capture_time_has_zero_offset() -> None:
    exif = piexif.load(_make(captured_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)))
    assert exif["Exif"][piexif.ExifIFD.OffsetTimeOriginal] == b"+00:00"
    assert exif["Exif"][piexif.ExifIFD.SubSecTimeOriginal] == b"000"


def test_make_jpeg_rejects_naive_capture_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _make(captured_at=datetime(2024, 1, 2, 3, 4, 5))


def test_make_jpeg_map_description_round_trips() -> None:
    desc = build_map_description(
        lat=55.7047123,
        lon=13.1910456,
        captured_at=CAPTURED_AT,
        compass_deg=123.45,
        altitude_m=48.25,
        make="Apple",
        model="iPhone 13",
        filename="img_0001.jpg",
    )
    raw = piexif.load(_make(map_description=desc))["0th"][piexif.ImageIFD.ImageDescription]
    assert json.loads(raw) == desc
    # compact, sorted keys, as mapillary_tools writes it (spec §8.5)
    assert raw.decode() == json.dumps(desc, sort_keys=True, separators=(",", ":"))
    assert desc["MAPCaptureTime"] == "2024_05_14_07_30_12_345"
    assert desc["MAPCompassHeading"] == {"TrueHeading": 123.45, "MagneticHeading": 123.45}


def test_make_jpeg_pano_has_parseable_gpano_xmp_after_exif() -> None:
    data = _make(width=512, height=256, pano=True, compass_deg=90.0)
    exif_at = data.find(b"Exif\x00\x00")
    xmp_at = data.find(XMP_HEADER)
    assert 0 < exif_at < xmp_at
    # the XMP header sits right after an APP1 marker and its length field
    assert data[xmp_at - 4 : xmp_at - 2] == b"\xff\xe1"
    packet = extract_xmp(data)
    assert packet is not None
    root = ET.fromstring(packet.decode("utf-8").split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    desc = root.find(f"{RDF}RDF/{RDF}Description")
    assert desc is not None
    assert desc.get(f"{GPANO}ProjectionType") == "equirectangular"
    assert desc.get(f"{GPANO}UsePanoramaViewer") == "True"
    assert desc.get(f"{GPANO}FullPanoWidthPixels") == "512"
    assert desc.get(f"{GPANO}FullPanoHeightPixels") == "256"
    assert desc.get(f"{GPANO}CroppedAreaImageWidthPixels") == "512"
    assert desc.get(f"{GPANO}CroppedAreaLeftPixels") == "0"
    # still a valid JPEG with intact EXIF
    with PILImage.open(io.BytesIO(data)) as img:
        img.load()
        assert img.size == (512, 256)
    assert piexif.load(data)["0th"][piexif.ImageIFD.Make] == b"Apple"


def test_make_jpeg_perspective_has_no_xmp() -> None:
    assert extract_xmp(_make()) is None


def test_make_jpeg_is_deterministic_and_varies_with_seed_and_position() -> None:
    assert _make() == _make()
    assert _make(seed=4) != _make()
    assert _make(lat=55.71) != _make()


def test_make_jpeg_draws_overlays_and_label() -> None:
    ring = ((0.4, 0.4), (0.6, 0.4), (0.6, 0.6), (0.4, 0.6))
    data = _make(overlays=[Overlay(ring, (255, 0, 0))], label="#7", quality=95)
    with PILImage.open(io.BytesIO(data)) as img:
        r, g, b = img.convert("RGB").getpixel((160, 120))  # type: ignore[misc]
    assert r > 200 and g < 60 and b < 60


def test_write_jpeg_creates_parents(tmp_path: Path) -> None:
    path = write_jpeg(
        tmp_path / "a" / "b.jpg",
        width=64,
        height=48,
        lat=1.0,
        lon=2.0,
        captured_at=CAPTURED_AT,
        compass_deg=None,
    )
    assert path.read_bytes()[:2] == b"\xff\xd8"


def test_make_jpeg_is_fast() -> None:
    timings = []
    for i in range(10):
        start = time.perf_counter()
        _make(width=1024, height=768, lat=55.7 + i * 1e-4, label=str(i))
        timings.append(time.perf_counter() - start)
    # target < 15 ms; allow a loaded CI box some slack
    assert sorted(timings)[len(timings) // 2] < 0.05
