"""Map features from sightings: rays meet where the object stands (issue #15, item 4)."""

from __future__ import annotations

import math
import random

import pytest

from wayview.pipeline.triangulate import (
    Sighting,
    bearing_deg,
    distance_m,
    physical_size_m,
    place_sightings,
)

LON0, LAT0 = 13.1910, 55.7047  # Lund
M_LAT = 1 / 111_195.0
M_LON = M_LAT / math.cos(math.radians(LAT0))


def at(east_m: float, north_m: float) -> tuple[float, float]:
    return LON0 + east_m * M_LON, LAT0 + north_m * M_LAT


def sighting(k: int, camera: tuple[float, float], target: tuple[float, float], *,
             heading: float | None = None, value: str = "regulatory--stop--g1",
             hfov: float = 60.0, noise_deg: float = 0.0, t: int = 0) -> Sighting:
    """A camera at `camera` (lon, lat) seeing an object at `target`; u from the true bearing."""
    true = bearing_deg(*camera, *target) + noise_deg
    heading = true if heading is None else heading
    off = math.radians(((true - heading + 180) % 360) - 180)
    u = 0.5 + math.tan(off) / (2 * math.tan(math.radians(hfov / 2)))
    dist = distance_m(*camera, *target)
    size = physical_size_m(value)
    width = 2 * math.atan(size / 2 / dist)
    width_frac = math.tan(width / 2) / math.tan(math.radians(hfov / 2))
    return Sighting(detection_id=k, image_id=100 + k, value=value, lon=camera[0],
                    lat=camera[1], heading_deg=heading, u=u, width_frac=width_frac,
                    hfov_deg=hfov, captured_at_ms=1_000 * (t or k))


def test_cameras_walking_up_a_street_place_the_sign_where_it_stands():
    sign = at(4.0, 40.0)  # right of the street, 40 m ahead of the first photo
    cams = [at(0.0, 3.0 * k) for k in range(8)]  # walking north, looking north
    sightings = [sighting(k, c, sign, heading=0.0) for k, c in enumerate(cams)]
    [feature] = place_sightings(sightings)
    assert feature.method == "triangulated"
    assert distance_m(feature.lon, feature.lat, *sign) < 0.05
    assert len(feature.sightings) == 8
    assert feature.first_seen_at_ms == 0 and feature.last_seen_at_ms == 7_000
    # It faces the cameras (south, a little west).
    assert 180 < feature.aligned_direction_deg < 200


def test_noisy_rays_and_a_stray_still_land_within_a_metre():
    rng = random.Random(7)
    sign = at(-5.0, 30.0)
    sightings = [sighting(k, at(rng.uniform(-1, 1), 2.5 * k), sign, heading=rng.uniform(-10, 10),
                          noise_deg=rng.gauss(0, 0.7)) for k in range(10)]
    # A false detection of the same value far off the others' consensus.
    sightings.append(sighting(99, at(0, 5), at(12, 20), heading=0.0))
    features = place_sightings(sightings)
    best = features[0]
    assert len(best.sightings) >= 9
    assert distance_m(best.lon, best.lat, *sign) < 1.0
    assert 99 not in {s.detection_id for s in best.sightings}


def test_two_signs_of_one_value_stay_two_features():
    a, b = at(4.0, 30.0), at(-4.0, 90.0)
    cams = [at(0.0, 4.0 * k) for k in range(6)]
    later = [at(0.0, 60.0 + 4.0 * k) for k in range(6)]
    sightings = [sighting(k, c, a, heading=0.0) for k, c in enumerate(cams)]
    sightings += [sighting(20 + k, c, b, heading=0.0) for k, c in enumerate(later)]
    features = place_sightings(sightings)
    assert len(features) == 2
    found = sorted(features, key=lambda f: f.lat)
    assert distance_m(found[0].lon, found[0].lat, *a) < 0.2
    assert distance_m(found[1].lon, found[1].lat, *b) < 0.2


def test_values_never_mix():
    sign = at(3.0, 25.0)
    cams = [at(0.0, 3.0 * k) for k in range(4)]
    sightings = [sighting(k, c, sign, value="regulatory--stop--g1") for k, c in enumerate(cams)]
    sightings += [sighting(10 + k, c, sign, value="regulatory--yield--g1")
                  for k, c in enumerate(cams)]
    features = place_sightings(sightings)
    assert sorted(f.value for f in features) == ["regulatory--stop--g1", "regulatory--yield--g1"]
    assert all(len(f.sightings) == 4 for f in features)


def test_one_view_is_placed_by_the_objects_known_size():
    sign = at(2.0, 18.0)
    [feature] = place_sightings([sighting(1, at(0, 0), sign, heading=0.0)])
    assert feature.method == "single-view"
    assert distance_m(feature.lon, feature.lat, *sign) < 0.3


def test_parallel_rays_of_a_short_baseline_become_one_feature():
    """Two frames a metre apart see a far sign at nearly the same angle: no stable
    intersection, so each is placed by size, and the two placements merge."""
    sign = at(0.5, 35.0)
    sightings = [sighting(1, at(0, 0), sign, heading=0.0), sighting(2, at(0, 1), sign,
                                                                     heading=0.0)]
    [feature] = place_sightings(sightings)
    assert len(feature.sightings) == 2
    assert distance_m(feature.lon, feature.lat, *sign) < 2.0


def test_panorama_sightings_use_the_full_circle():
    sign = at(-10.0, 10.0)  # north-west
    cams = [at(0, 0), at(0, 8), at(6, 0)]
    sightings = []
    for k, c in enumerate(cams):
        true = bearing_deg(*c, *sign)
        u = 0.5 + (((true - 90.0 + 180) % 360) - 180) / 360.0
        width = math.degrees(2 * math.atan(0.35 / 2 / distance_m(*c, *sign))) / 360.0
        sightings.append(Sighting(k, k, "object--fire-hydrant", c[0], c[1], 90.0, u, width,
                                  360.0, k, spherical=True))
    [feature] = place_sightings(sightings)
    assert distance_m(feature.lon, feature.lat, *sign) < 0.05


@pytest.mark.parametrize("n", [200])
def test_many_sightings_across_a_city_stay_fast_and_separate(n):
    """Signs 500 m apart never join, and the search runs per neighbourhood."""
    import time

    sightings = []
    for block in range(n // 4):
        sign = at(4.0, 500.0 * block + 20)
        for k in range(4):
            sightings.append(sighting(block * 10 + k, at(0, 500.0 * block + 3 * k), sign,
                                      heading=0.0))
    started = time.monotonic()
    features = place_sightings(sightings)
    assert len(features) == n // 4
    assert time.monotonic() - started < 10


def test_a_lone_ray_with_a_wrong_heading_joins_the_object_it_points_near():
    """Phone compasses err by 10° and more: a third camera whose heading is 8° off still
    saw the same sign, so it adds evidence instead of a second feature."""
    sign = at(3.0, 40.0)
    sightings = [sighting(k, at(0.0, 20.0 * k), sign, heading=0.0) for k in range(2)]
    lone = sighting(9, at(-2.0, -5.0), sign, heading=0.0)
    sightings.append(Sighting(**{**{f: getattr(lone, f) for f in lone.__slots__},
                                 "heading_deg": 8.0}))
    [feature] = place_sightings(sightings)
    assert {s.detection_id for s in feature.sightings} == {0, 1, 9}
    assert distance_m(feature.lon, feature.lat, *sign) < 0.5  # the lone ray did not move it
    # Far off in angle: a separate object.
    far = Sighting(**{**{f: getattr(lone, f) for f in lone.__slots__}, "heading_deg": 40.0})
    assert len(place_sightings([*sightings[:2], far])) == 2
