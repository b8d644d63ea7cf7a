"""The pipeline sees (issue #15): imported photos of a street with a stop sign get detections,
a quality score and exactly one map feature where the sign stands; a second pass joins it."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image as PILImage

from wayview.blobs import LocalBlobs
from wayview.fixture_signs import paste_sign
from wayview.fixtures import make_jpeg
from wayview.ingest.importer import import_paths
from wayview.model.entities import DetectionSearch, ImageSearch, MapFeatureSearch
from wayview.pipeline.triangulate import bearing_deg, distance_m
from wayview.store import open_store
from wayview.testing import make_settings

LON0, LAT0 = 13.40, 52.52
M_LAT = 1 / 111_195.0
M_LON = M_LAT / math.cos(math.radians(LAT0))
SIGN = (LON0 + 6.0 * M_LON, LAT0 + 38.0 * M_LAT)  # 6 m right of the street, 38 m ahead
FOCAL_35MM = 28  # a 65.5° horizontal field of view
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def street_photo(path: Path, north_m: float, east_m: float, when: datetime,
                 compass: float = 0.0) -> None:
    """A 1024×768 photo at (east_m, north_m) looking at `compass`, the sign pasted where a
    pinhole camera would see it."""
    lon, lat = LON0 + east_m * M_LON, LAT0 + north_m * M_LAT
    data = make_jpeg(width=1024, height=768, lat=lat, lon=lon, captured_at=when,
                     compass_deg=compass, focal_35mm=FOCAL_35MM, seed=int(north_m))
    image = PILImage.open(io.BytesIO(data))
    exif = image.info["exif"]
    image = image.convert("RGB")
    hfov = 2 * math.atan(18 / FOCAL_35MM)
    off = math.radians(((bearing_deg(lon, lat, *SIGN) - compass + 180) % 360) - 180)
    u = 0.5 + math.tan(off) / (2 * math.tan(hfov / 2))
    dist = distance_m(lon, lat, *SIGN)
    focal_px = 1024 / (2 * math.tan(hfov / 2))
    size = max(8, round(focal_px * 0.75 / dist))
    paste_sign(image, "regulatory--stop--g1", round(u * 1024 - size / 2), 300, size)
    image.save(path, "JPEG", quality=92, exif=exif)


def walk(folder: Path, start_m: float, east_m: float, when: datetime, count: int = 6) -> Path:
    """Photos every 4 m northwards (the sign 38 to 18 m ahead, 10° to 18° right: 16 to 32 px
    wide)."""
    folder.mkdir(parents=True)
    for k in range(count):
        street_photo(folder / f"{k:02d}.jpg", start_m + 4.0 * k, east_m,
                     when + timedelta(seconds=2 * k))
    return folder


@pytest.fixture
async def world(tmp_path):
    settings = make_settings(tmp_path)
    store = open_store(settings)
    await store.open()
    await store.create_user("ann")
    try:
        yield settings, store, LocalBlobs(settings.blobs_path)
    finally:
        await store.close()


async def test_imported_photos_make_one_map_feature_where_the_sign_stands(world, tmp_path):
    settings, store, blobs = world
    report = await import_paths(store, blobs, settings, [walk(tmp_path / "a", 0.0, 0.0, T0)],
                                username="ann")
    assert report.imported == 6
    images = (await store.search_images(ImageSearch(bbox=(13.39, 52.51, 13.41, 52.53)))).items
    assert all(im.quality_score is not None and 0.5 <= im.quality_score <= 1 for im in images)
    detections = (await store.search_detections(DetectionSearch(
        bbox=(13.39, 52.51, 13.41, 52.53)))).items
    assert len(detections) >= 4
    assert {d.value for d in detections} == {"regulatory--stop--g1"}
    features = (await store.search_map_features(MapFeatureSearch(
        bbox=(13.39, 52.51, 13.41, 52.53)))).items
    assert len(features) == 1
    [feature] = features
    assert feature.object_type == "trafficsign"
    assert distance_m(feature.lon, feature.lat, *SIGN) < 3.0
    assert all(d.map_feature_id == feature.id for d in detections)
    seen = {d.image_id for d in detections}
    times = sorted(im.captured_at_ms for im in images if im.id in seen)
    assert (feature.first_seen_at_ms, feature.last_seen_at_ms) == (times[0], times[-1])
    assert feature.aligned_direction_deg is not None
    assert 150 < feature.aligned_direction_deg < 210  # it faces the street, southwards

    # A second walk a day later along the other side joins the same feature.
    later = T0 + timedelta(days=1)
    await import_paths(store, blobs, settings, [walk(tmp_path / "b", 2.0, -2.0, later)],
                       username="ann")
    features = (await store.search_map_features(MapFeatureSearch(
        bbox=(13.39, 52.51, 13.41, 52.53)))).items
    assert [f.id for f in features] == [feature.id]
    assert features[0].last_seen_at_ms > feature.last_seen_at_ms
    evidence = (await store.detections_for_features([feature.id]))[feature.id]
    assert len(evidence) > len(detections)
    assert distance_m(features[0].lon, features[0].lat, *SIGN) < 3.0


async def test_detection_and_features_can_be_switched_off(world, tmp_path):
    settings, store, blobs = world
    off = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(
        update={"detectors": "none"})})
    await import_paths(store, blobs, off, [walk(tmp_path / "a", 0.0, 0.0, T0, count=3)],
                       username="ann")
    bbox = (13.39, 52.51, 13.41, 52.53)
    assert (await store.search_detections(DetectionSearch(bbox=bbox))).items == []
    no_features = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(
        update={"map_features": False})})
    await import_paths(store, blobs, no_features, [walk(tmp_path / "b", 1.0, 0.0, T0, count=3)],
                       username="ann")
    assert len((await store.search_detections(DetectionSearch(bbox=bbox))).items) >= 2
    assert (await store.search_map_features(MapFeatureSearch(bbox=bbox))).items == []


async def test_reprocess_adds_and_removes_evidence_and_features(world, tmp_path):
    """Imported without detectors, reprocessed with them: detections and the feature appear;
    reprocessed with none: the evidence goes and the feature with it."""
    from wayview.pipeline.reprocess import reprocess

    settings, store, blobs = world
    bbox = (13.39, 52.51, 13.41, 52.53)
    blind = settings.pipeline.model_copy(update={"detectors": "none"})
    await import_paths(store, blobs, settings.model_copy(update={"pipeline": blind}),
                       [walk(tmp_path / "a", 0.0, 0.0, T0)], username="ann")
    assert (await store.search_map_features(MapFeatureSearch(bbox=bbox))).items == []
    done: list[int] = []
    report = await reprocess(settings.pipeline, store, blobs, progress=done.append)
    assert (report.images, report.sequences, sum(done)) == (6, 1, 6)
    assert report.detections >= 4 and report.features_written == 1
    [feature] = (await store.search_map_features(MapFeatureSearch(bbox=bbox))).items
    assert distance_m(feature.lon, feature.lat, *SIGN) < 3.0
    # Idempotent: the same feature, the same number of detections.
    again = await reprocess(settings.pipeline, store, blobs)
    assert again.detections == report.detections and again.features_deleted == 0
    assert [f.id for f in (await store.search_map_features(MapFeatureSearch(bbox=bbox))).items] \
        == [feature.id]
    gone = await reprocess(blind, store, blobs)
    assert (gone.detections, gone.features_deleted) == (0, 1)
    assert (await store.search_map_features(MapFeatureSearch(bbox=bbox))).items == []
    assert (await store.search_detections(DetectionSearch(bbox=bbox))).items == []


def test_reprocess_command_needs_a_selection(tmp_path):
    from click.testing import CliRunner

    from wayview.cli import cli

    result = CliRunner().invoke(cli, ["reprocess", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2 and "--sequence KEY, --organization ID or --all" in result.output
    result = CliRunner().invoke(cli, ["reprocess", "--all", "--json", "--data-dir",
                                      str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert '"images": 0' in result.stdout


class ExplodingDetector:
    """An operator's detector with a bug."""

    name = "exploding"

    def detect(self, image):
        raise RuntimeError("bug in a plug-in")


async def test_a_failing_detector_does_not_lose_the_photos(world, tmp_path, caplog):
    settings, store, blobs = world
    broken = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(
        update={"detectors": "tests.pipeline.test_perception:ExplodingDetector"})})
    report = await import_paths(store, blobs, broken, [walk(tmp_path / "a", 0.0, 0.0, T0, 3)],
                                username="ann")
    assert report.imported == 3 and not report.skipped
    bbox = (13.39, 52.51, 13.41, 52.53)
    assert (await store.search_detections(DetectionSearch(bbox=bbox))).items == []
    images = (await store.search_images(ImageSearch(bbox=bbox))).items
    assert all(im.quality_score is not None for im in images)
    assert "a detector failed" in caplog.text


class FaceEverywhere:
    """A face finder that calls the sign a face, and finds a real face in the corner."""

    name = "face-everywhere"

    def __init__(self, sign_box: tuple[int, int, int, int]) -> None:
        self.sign_box = sign_box

    def detect(self, image):
        from wayview.pipeline.blur import Region

        x0, y0, x1, y1 = self.sign_box
        return [Region(x0 + 2, y0 + 2, x1 - x0 - 4, y1 - y0 - 4, "face"),
                Region(10, 10, 40, 40, "face")]


def test_a_sign_the_detectors_found_is_never_blurred_as_a_face(tmp_path):
    from wayview.pipeline.process import ImageProcessor

    path = tmp_path / "sign.jpg"
    street_photo(path, 20.0, 0.0, T0)
    data = path.read_bytes()
    settings = make_settings(tmp_path).pipeline
    processor = ImageProcessor(settings, LocalBlobs(tmp_path / "blobs"))
    [found] = processor.perceiver.look(data).found
    u0, v0, u1, v1 = found.box
    box = (round(u0 * 1024), round(v0 * 768), round(u1 * 1024), round(v1 * 768))
    processor.blurrer = FaceEverywhere(box)
    derived = processor.derive(1, data, 1024, 768)
    assert derived.blurred_regions == 1  # the corner face only
    assert [f.value for f in derived.found] == ["regulatory--stop--g1"]


async def test_reprocess_skips_an_image_whose_derivative_is_damaged(world, tmp_path):
    from wayview.blobs import image_blob_key
    from wayview.pipeline.reprocess import reprocess

    settings, store, blobs = world
    await import_paths(store, blobs, settings, [walk(tmp_path / "a", 0.0, 0.0, T0, 2)],
                       username="ann")
    images = (await store.search_images(ImageSearch(bbox=(13.39, 52.51, 13.41, 52.53)))).items
    blobs.put_bytes(image_blob_key(images[0].id, "thumb_2048"), b"\xff\xd8 not a jpeg")
    report = await reprocess(settings.pipeline, store, blobs)
    assert report.images == 1
    assert [(i, r.split(":")[0]) for i, r in report.skipped] == [
        (images[0].id, "cannot decode its 2048-px derivative")]
