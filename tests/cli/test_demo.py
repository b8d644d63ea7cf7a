"""Tests of wayview.demo: the plan (pure), a small build through the importer, `wayview demo`."""

from __future__ import annotations

import json
import math
import stat
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from wayview.blobs import LocalBlobs
from wayview.demo import (
    DemoInfo,
    PlannedSequence,
    build_demo,
    demo_command,
    plan_demo,
    plan_features,
    plan_loose_detections,
    prepare_demo,
)
from wayview.demo.command import MARKER_FILE, TOKEN_FILE, demo_banner
from wayview.demo.plan import ORGANIZATIONS, USERS
from wayview.model.entities import ImageSearch, MapFeatureSearch
from wayview.testing import make_settings, open_test_store

SEED = 7


def _shoelace(ring: tuple[tuple[float, float], ...]) -> float:
    return sum(
        u0 * v1 - u1 * v0 for (u0, v0), (u1, v1) in zip(ring, ring[1:] + ring[:1], strict=True)
    )


@pytest.fixture(scope="module")
def big_plan() -> list[PlannedSequence]:
    return plan_demo(2000, SEED)


# -- the plan (no JPEGs) ---------------------------------------------------------------------


def test_plan_demo_2000_images_in_at_least_20_sequences(big_plan: list[PlannedSequence]) -> None:
    assert len(big_plan) >= 20
    assert sum(len(s.images) for s in big_plan) == 2000
    assert {s.username for s in big_plan} == {u.username for u in USERS}
    assert {s.organization_slug for s in big_plan} >= {o.slug for o in ORGANIZATIONS}
    panos = [s for s in big_plan if s.pano]
    assert 2 <= len(panos) <= 4
    assert all((s.width, s.height) == (2048, 1024) for s in panos)
    assert all((s.width, s.height) == (1024, 768) for s in big_plan if not s.pano)
    assert len({s.camera.model for s in big_plan}) >= 6


def test_plan_demo_spacing_timing_and_headings(big_plan: list[PlannedSequence]) -> None:
    steps_m: list[float] = []
    for seq in big_plan:
        for a, b in zip(seq.images, seq.images[1:], strict=False):
            step = math.dist((a.x_m, a.y_m), (b.x_m, b.y_m))
            steps_m.append(step)
            assert step < 50  # far below the importer's 100 m cut
            assert 1000 <= b.captured_at_ms - a.captured_at_ms <= 2000
            if step > 2.5:  # heading follows the direction of travel
                travel = math.degrees(math.atan2(b.x_m - a.x_m, b.y_m - a.y_m)) % 360
                diff = abs((travel - b.compass_deg + 180) % 360 - 180)
                assert diff < 60 or abs(diff - 90) < 45  # straight on, or turning a corner
    steps_m.sort()
    assert 3.0 <= steps_m[len(steps_m) // 2] <= 5.0


def test_plan_demo_sequences_of_one_user_are_minutes_apart(
    big_plan: list[PlannedSequence],
) -> None:
    by_user: dict[str, list[tuple[int, int]]] = {}
    for seq in big_plan:
        times = (seq.images[0].captured_at_ms, seq.images[-1].captured_at_ms)
        by_user.setdefault(seq.username, []).append(times)
    for runs in by_user.values():
        runs.sort()
        for (_s0, end), (start, _e1) in zip(runs, runs[1:], strict=False):
            assert start - end >= 5 * 60 * 1000


def test_plan_demo_fits_one_bbox_query(big_plan: list[PlannedSequence]) -> None:
    lats = [i.lat for s in big_plan for i in s.images]
    lons = [i.lon for s in big_plan for i in s.images]
    # every image is reachable from one 0.1° × 0.1° (0.01 deg²) query around the centre
    assert max(lats) - min(lats) < 0.03 and max(lons) - min(lons) < 0.05
    assert abs((max(lats) + min(lats)) / 2 - 55.7047) < 0.01
    assert abs((max(lons) + min(lons)) / 2 - 13.1910) < 0.01


def test_plan_demo_is_deterministic() -> None:
    assert plan_demo(300, SEED) == plan_demo(300, SEED)
    assert plan_demo(300, SEED) != plan_demo(300, SEED + 1)


def test_plan_demo_small_still_has_several_sequences_and_a_pano() -> None:
    plan = plan_demo(120, SEED)
    assert len(plan) >= 5
    assert any(s.pano for s in plan)
    assert sum(len(s.images) for s in plan) == 120


def test_plan_features_seen_by_two_to_four_images(big_plan: list[PlannedSequence]) -> None:
    features = plan_features(big_plan, SEED)
    assert 140 <= len(features) <= 150
    assert Counter(f.object_type for f in features).keys() == {"trafficsign", "point"}
    assert len({f.object_value for f in features}) >= 10
    for feature in features:
        assert "--" in feature.object_value
        assert 2 <= len(feature.sightings) <= 4
        for sighting in feature.sightings:
            assert len(sighting.ring) >= 3
            assert all(0 <= u <= 1 and 0 <= v <= 1 for u, v in sighting.ring)
            assert _shoelace(sighting.ring) > 0  # clockwise on screen (y down), MVT exterior
    assert plan_features(big_plan, SEED) == features


def test_plan_loose_detections(big_plan: list[PlannedSequence]) -> None:
    loose = plan_loose_detections(big_plan, SEED)
    assert 100 <= len(loose) <= 300
    assert all("--" in d.value for d in loose)


# -- building through the importer -----------------------------------------------------------


async def test_build_demo_small(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    blobs = LocalBlobs(settings.blobs_path)
    async with open_test_store(settings) as store:
        info = await build_demo(store, blobs, settings, images=120, seed=SEED)

        assert info.image_count >= 120
        assert await store.count_images() >= 120
        assert info.sequence_count >= len(plan_demo(120, SEED))
        assert info.pano_image_count > 0
        assert set(info.users) == {u.username for u in USERS}
        assert len(info.organizations) == 2

        page = await store.search_images(ImageSearch(bbox=info.bbox, limit=None))
        assert len(page.items) == info.image_count
        assert {im.organization_id for im in page.items} >= set(info.organizations.values())
        panos = [im for im in page.items if im.is_pano]
        assert panos and all(im.camera_type == "spherical" for im in panos)
        sample = (await store.get_images([info.sample_image_id]))[info.sample_image_id]
        assert sample.sequence_id == info.sample_sequence_id

        features = (await store.search_map_features(MapFeatureSearch(bbox=info.bbox))).items
        assert len(features) == info.map_feature_count >= 4
        assert {f.object_type for f in features} == {"trafficsign", "point"}
        assert info.sample_map_feature_id in {f.id for f in features}
        per_feature = await store.detections_for_features([f.id for f in features])
        images_by_id = {im.id: im for im in page.items}
        for feature in features:
            dets = per_feature[feature.id]
            assert 2 <= len(dets) <= 4
            times = [images_by_id[d.image_id].captured_at_ms for d in dets]
            assert feature.first_seen_at_ms == min(times)
            assert feature.last_seen_at_ms == max(times)
        per_image = await store.detections_for_images(list(images_by_id))
        all_dets = [d for dets in per_image.values() for d in dets]
        assert len(all_dets) == info.detection_count
        assert any(d.map_feature_id is None for d in all_dets)


# -- the command -----------------------------------------------------------------------------


def test_demo_command_build_only_builds_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    runner = CliRunner()
    args = ["--data-dir", str(data_dir), "--images", "40", "--build-only"]
    first = runner.invoke(demo_command, args)
    assert first.exit_code == 0, first.output
    info = json.loads(first.stdout)
    assert info["image_count"] >= 40
    assert isinstance(info["sample_image_id"], str) and info["sample_image_id"].isdigit()
    assert (data_dir / MARKER_FILE).is_file()

    second = runner.invoke(demo_command, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout) == info  # reused, not rebuilt


def test_demo_command_refuses_a_foreign_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    data_dir.mkdir()
    (data_dir / "wayview.db").write_bytes(b"")
    result = CliRunner().invoke(demo_command, ["--data-dir", str(data_dir), "--build-only"])
    assert result.exit_code != 0
    assert "no finished demo" in result.output


async def test_prepare_demo_saves_the_token_privately(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    info, built, token, tour = await prepare_demo(settings, images=30, seed=SEED,
                                                  with_token=True)
    assert built and token is not None and token.startswith("MLY|")
    path = settings.data_dir / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = await prepare_demo(settings, images=30, seed=SEED, with_token=True)
    assert again == (info, False, token, tour)


def test_demo_banner_quotes_urls_and_uses_real_ids() -> None:
    info = DemoInfo(
        users={"alice": 1},
        organizations={"lund-streets": 2},
        sequence_count=3,
        image_count=30,
        pano_image_count=9,
        map_feature_count=4,
        detection_count=12,
        sample_image_id=123456789012345,
        sample_image_lon_lat=(13.19, 55.70),
        sample_sequence_id="abcdefghijklmnopqrstuv",
        sample_pano_image_id=None,
        sample_map_feature_id=223456789012345,
        bbox=(13.17, 55.69, 13.21, 55.72),
        images_requested=30,
        seed=SEED,
    )
    token = "MLY|4100327730013843|5bb78b81720791946a9a7b956c57b7cf"
    text = demo_banner(info, "http://127.0.0.1:8080", token, Path("x"), built=True)
    curls = [line.strip() for line in text.splitlines() if line.strip().startswith("curl")
             and "Authorization" not in line]
    assert len(curls) >= 8
    for line in curls:
        url = line.split("'")[1]
        assert url.startswith("http://127.0.0.1:8080/") and url.endswith(f"access_token={token}")
        # curl treats {} as a URL glob unless -g: nested fields need it.
        assert "{" not in url or line.startswith("curl -g "), line
    assert any("/map_features?bbox=" in c for c in curls)
    assert any("/mly_map_feature_traffic_sign/2/14/" in c for c in curls)
    assert "/me?fields=id,username" in text and "tokens create --user alice" in text
    assert any("/123456789012345?" in c for c in curls)
    assert any("sequence_id=abcdefghijklmnopqrstuv" in c for c in curls)
    assert any("/223456789012345/detections" in c for c in curls)
    assert DemoInfo.from_json_dict(json.loads(info.to_json())) == info
