"""Tests of wayview.pipeline.positions: track smoothing, headings, OpenSfM rotations, merge_cc."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wayview.pipeline.positions import (
    ComputedShot,
    Positioner,
    Reconstruction,
    ShotInput,
    TrackPositioner,
    angle_axis_to_matrix,
    camera_parameters_from_exif,
    enu_to_lla,
    heading_from_rotation,
    lla_to_enu,
    matrix_to_angle_axis,
    merge_components,
    rotation_from_heading,
)

T0_MS = 1_700_000_000_000
LAT0, LON0 = 55.7, 13.2
REF = (LAT0, LON0, 0.0)


def enu_point(east_m: float, north_m: float) -> tuple[float, float]:
    """(lon, lat) of a point east/north of (LAT0, LON0) on the ground."""
    lat, lon, _ = enu_to_lla([east_m, north_m, 0.0], REF)
    return float(lon), float(lat)


def shot(
    i: int,
    east_m: float,
    north_m: float,
    *,
    t_s: float | None = None,
    compass: float | None = None,
    camera_type: str = "perspective",
    altitude: float | None = None,
    orientation: int = 1,
    focal_35mm: float | None = None,
) -> ShotInput:
    lon, lat = enu_point(east_m, north_m)
    return ShotInput(
        image_id=4_000_000_000_000_000 + i,
        captured_at_ms=T0_MS + round((i if t_s is None else t_s) * 1000),
        lon=lon,
        lat=lat,
        altitude_m=altitude,
        compass_angle_deg=compass,
        camera_type=camera_type,
        width=4000,
        height=3000,
        exif_orientation=orientation,
        focal_35mm=focal_35mm,
        make="TestMake",
        model="TestModel",
    )


def ground_offset_m(a: ComputedShot, east_m: float, north_m: float) -> float:
    e, n, _ = lla_to_enu(a.lat, a.lon, 0.0, REF)
    return math.hypot(float(e) - east_m, float(n) - north_m)


def rotation_matrix(rotation: tuple[float, float, float]) -> np.ndarray:
    return angle_axis_to_matrix(rotation)


# ---------------------------------------------------------------- rotations


@given(st.floats(min_value=0.0, max_value=359.999), st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8]))
def test_heading_round_trips_through_rotation(heading: float, orientation: int) -> None:
    back = heading_from_rotation(rotation_from_heading(heading, orientation))
    assert abs((back - heading + 180.0) % 360.0 - 180.0) < 1e-9
    assert 0.0 <= back < 360.0


@pytest.mark.parametrize(
    ("heading", "forward"),
    [
        (0.0, (0.0, 1.0, 0.0)),
        (90.0, (1.0, 0.0, 0.0)),
        (180.0, (0.0, -1.0, 0.0)),
        (270.0, (-1.0, 0.0, 0.0)),
    ],
)
def test_forward_axis_points_along_the_heading(
    heading: float, forward: tuple[float, float, float]
) -> None:
    r = rotation_matrix(rotation_from_heading(heading))
    np.testing.assert_allclose(r.T @ [0.0, 0.0, 1.0], forward, atol=1e-12)
    np.testing.assert_allclose(r.T @ [0.0, 1.0, 0.0], (0.0, 0.0, -1.0), atol=1e-12)  # y is down
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def test_heading_zero_is_a_quarter_turn_about_east() -> None:
    # x_cam = R·X: R maps north (forward) to +z and up to -y, a +90° rotation about x
    np.testing.assert_allclose(rotation_from_heading(0.0), (math.pi / 2, 0.0, 0.0), atol=1e-12)


def mapillaryjs_rotation_from_compass(compass_deg: float, orientation: int) -> np.ndarray:
    """MapillaryJS GraphCalculator.rotationFromCompass as a matrix (three.js Euler XYZ)."""

    def rx(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def ry(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    def rz(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    x, y, z = {
        1: (math.pi / 2, 0.0, 0.0),
        3: (-math.pi / 2, 0.0, math.pi),
        6: (0.0, -math.pi / 2, -math.pi / 2),
        8: (0.0, math.pi / 2, math.pi / 2),
    }[orientation]
    return rx(x) @ ry(y) @ rz(math.radians(compass_deg)) @ rz(z)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("heading", [0.0, 33.0, 90.0, 211.5])
def test_orientation_matches_mapillaryjs_fallback(orientation: int, heading: float) -> None:
    ours = rotation_matrix(rotation_from_heading(heading, orientation))
    np.testing.assert_allclose(
        ours, mapillaryjs_rotation_from_compass(heading, orientation), atol=1e-12
    )


def test_orientation_6_stored_x_axis_points_down() -> None:
    r = rotation_matrix(rotation_from_heading(90.0, 6))
    np.testing.assert_allclose(r.T @ [1.0, 0.0, 0.0], (0.0, 0.0, -1.0), atol=1e-12)
    np.testing.assert_allclose(r.T @ [0.0, 0.0, 1.0], (1.0, 0.0, 0.0), atol=1e-12)


def test_mirrored_orientations_use_their_counterparts() -> None:
    for mirrored, plain in [(2, 1), (4, 3), (5, 8), (7, 6)]:
        assert rotation_from_heading(40.0, mirrored) == rotation_from_heading(40.0, plain)


unit_vectors = st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1)).filter(
    lambda v: math.sqrt(sum(c * c for c in v)) > 1e-3
)


@given(
    unit_vectors,
    st.one_of(
        st.floats(0.0, math.pi),
        st.floats(math.pi - 1e-6, math.pi),
        st.floats(0.0, 1e-6),
    ),
)
def test_angle_axis_matrix_round_trip(axis: tuple[float, float, float], angle: float) -> None:
    a = np.asarray(axis) / np.linalg.norm(axis)
    vector = a * angle
    m = angle_axis_to_matrix(vector)
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    back = np.asarray(matrix_to_angle_axis(m))
    if angle > math.pi - 1e-6:
        # at π, v and -v are the same rotation: compare matrices
        np.testing.assert_allclose(angle_axis_to_matrix(back), m, atol=1e-12)
        assert abs(np.linalg.norm(back) - angle) < 1e-7
    else:
        np.testing.assert_allclose(back, vector, atol=1e-12)


def test_angle_axis_exactly_pi_and_zero() -> None:
    for vector in ([math.pi, 0.0, 0.0], [0.0, -math.pi, 0.0], [0.0, 0.0, math.pi]):
        back = matrix_to_angle_axis(angle_axis_to_matrix(vector))
        assert abs(abs(sum(back)) - math.pi) < 1e-12
    assert matrix_to_angle_axis(np.eye(3)) == (0.0, 0.0, 0.0)
    tiny = matrix_to_angle_axis(angle_axis_to_matrix([1e-10, -2e-10, 3e-10]))
    np.testing.assert_allclose(tiny, [1e-10, -2e-10, 3e-10], rtol=1e-6, atol=0)


# ---------------------------------------------------------------- geodesy


@given(
    st.floats(-80, 80),
    st.floats(-179, 179),
    st.floats(-3000, 3000),
    st.floats(-3000, 3000),
    st.floats(-200, 500),
)
def test_enu_round_trip_is_millimetre_exact(
    lat: float, lon: float, east: float, north: float, up: float
) -> None:
    ref = (lat, lon, 120.0)
    back_lat, back_lon, back_alt = enu_to_lla([east, north, up], ref)
    np.testing.assert_allclose(
        lla_to_enu(back_lat, back_lon, back_alt, ref), [east, north, up], atol=1e-3
    )


def test_enu_matches_known_distances() -> None:
    # 0.001° of latitude at 55.7° ≈ 111.29 m (WGS84 meridian arc); east is +x
    north = lla_to_enu(LAT0 + 0.001, LON0, 0.0, REF)
    assert abs(float(north[1]) - 111.29) < 0.05 and abs(float(north[0])) < 1e-6
    east = lla_to_enu(LAT0, LON0 + 0.001, 0.0, REF)
    assert float(east[0]) > 62.0 and abs(float(east[1])) < 0.01


def test_enu_arrays() -> None:
    enu = lla_to_enu([LAT0, LAT0 + 0.01], [LON0, LON0], [0.0, 0.0], REF)
    assert enu.shape == (2, 3)
    lla = enu_to_lla(enu, REF)
    np.testing.assert_allclose(lla[:, 0], [LAT0, LAT0 + 0.01], atol=1e-10)


# ---------------------------------------------------------------- the track positioner


def solve(shots: list[ShotInput]) -> Reconstruction:
    positioner: Positioner = TrackPositioner()
    return positioner.solve(shots)


def test_clean_noisy_track_barely_moves() -> None:
    rng = random.Random(1)
    shots = []
    for i in range(60):
        s = shot(i, 0.0, 5.0 * i)
        shots.append(
            ShotInput(
                **{
                    **{f: getattr(s, f) for f in s.__slots__},
                    "lat": s.lat + rng.uniform(-1e-7, 1e-7),
                    "lon": s.lon + rng.uniform(-1e-7, 1e-7),
                }
            )
        )
    recon = solve(shots)
    for i, computed in enumerate(recon.shots):
        assert ground_offset_m(computed, 0.0, 5.0 * i) < 0.5


def test_spike_is_pulled_back_to_the_track() -> None:
    shots = [shot(i, 80.0 if i == 20 else 0.0, 5.0 * i) for i in range(40)]
    recon = solve(shots)
    assert ground_offset_m(recon.shots[20], 0.0, 100.0) < 3.0
    for i in (18, 19, 21, 22):
        assert ground_offset_m(recon.shots[i], 0.0, 5.0 * i) < 1.0


def test_spike_at_the_first_fix_is_repaired() -> None:
    shots = [shot(i, 0.0, 100.0 if i == 0 else 5.0 * i) for i in range(20)]
    recon = solve(shots)
    assert ground_offset_m(recon.shots[0], 0.0, 0.0) < 3.0


def test_corner_is_kept_within_a_few_metres() -> None:
    pts = [(0.0, 10.0 * i) for i in range(10)] + [(10.0 * i, 90.0) for i in range(1, 10)]
    recon = solve([shot(i, e, n) for i, (e, n) in enumerate(pts)])
    for computed, (e, n) in zip(recon.shots, pts, strict=True):
        assert ground_offset_m(computed, e, n) <= 3.0 + 1e-6


def test_missing_compass_comes_from_the_direction_of_travel() -> None:
    recon = solve([shot(i, 4.0 * i, 0.0) for i in range(10)])
    for computed in recon.shots:
        assert abs(computed.compass_angle_deg - 90.0) < 0.5
        assert abs(heading_from_rotation(computed.rotation) - 90.0) < 0.5


def test_wild_compass_is_replaced_but_a_plausible_one_kept() -> None:
    compasses = [10.0, 350.0, 5.0, 200.0, 0.0, 15.0, 355.0, 2.0]
    recon = solve([shot(i, 0.0, 4.0 * i, compass=c) for i, c in enumerate(compasses)])
    angles = [s.compass_angle_deg for s in recon.shots]
    assert abs(angles[3] - 0.0) < 1.0 or abs(angles[3] - 360.0) < 1.0  # 200° → travel north
    assert angles[0] == pytest.approx(10.0) and angles[1] == pytest.approx(350.0)


def test_rear_camera_keeps_its_mount() -> None:
    recon = solve([shot(i, 0.0, 4.0 * i, compass=180.0 + (i % 3 - 1) * 5.0) for i in range(12)])
    for computed in recon.shots:
        assert abs(computed.compass_angle_deg - 180.0) <= 5.0 + 1e-9


def test_stationary_camera_keeps_its_compass() -> None:
    recon = solve([shot(i, 0.1 * (i % 2), 0.05 * i, compass=123.0) for i in range(8)])
    for computed in recon.shots:
        assert computed.compass_angle_deg == pytest.approx(123.0)


def test_panorama_keeps_its_compass_while_moving() -> None:
    recon = solve([shot(i, 5.0 * i, 0.0, compass=10.0, camera_type="spherical") for i in range(6)])
    assert all(s.compass_angle_deg == pytest.approx(10.0) for s in recon.shots)
    assert all(s.camera_parameters is None for s in recon.shots)
    assert next(iter(recon.cameras.values()))["projection_type"] == "spherical"


def test_camera_parameters_from_focal_35mm() -> None:
    recon = solve([shot(0, 0.0, 0.0, focal_35mm=26.0), shot(1, 0.0, 3.0)])
    assert recon.shots[0].camera_parameters == pytest.approx((26.0 / 36.0, 0.0, 0.0))
    assert recon.shots[1].camera_parameters == (0.85, 0.0, 0.0)
    assert camera_parameters_from_exif("fisheye", 18.0) == (0.5, 0.0, 0.0)
    assert camera_parameters_from_exif("equirectangular", 18.0) is None
    cams = recon.cameras
    assert sorted(c["focal"] for c in cams.values()) == pytest.approx([26.0 / 36.0, 0.85])
    assert {s.camera_id for s in recon.shots} == set(cams)


def test_translation_is_minus_r_times_the_centre() -> None:
    shots = [
        shot(i, 3.0 * i, 2.0 * i, altitude=30.0 + 0.5 * i, compass=56.0, orientation=6)
        for i in range(15)
    ]
    recon = solve(shots)
    for computed in recon.shots:
        r = rotation_matrix(computed.rotation)
        centre = -r.T @ np.asarray(computed.translation)
        assert computed.altitude_m is not None
        expected = lla_to_enu(computed.lat, computed.lon, computed.altitude_m, recon.reference_lla)
        np.testing.assert_allclose(centre, expected, atol=1e-3)
        assert computed.atomic_scale == 1.0
        # in the reconstruction frame the heading differs from the local one by the (tiny)
        # meridian convergence only
        assert abs(heading_from_rotation(computed.rotation) - computed.compass_angle_deg) < 0.01


def test_altitudes_are_smoothed_and_missing_ones_stay_missing() -> None:
    shots = [shot(i, 0.0, 5.0 * i, altitude=100.0 + (60.0 if i == 7 else 0.0)) for i in range(15)]
    shots[3] = shot(3, 0.0, 15.0, altitude=None)
    recon = solve(shots)
    assert recon.shots[3].altitude_m is None
    assert recon.reference_lla[2] == pytest.approx(100.0)
    for i, computed in enumerate(recon.shots):
        if i != 3:
            assert computed.altitude_m == pytest.approx(100.0, abs=0.5)


def test_shots_come_back_in_input_order_and_reconstruction_serialises() -> None:
    shots = [shot(i, 0.0, 5.0 * i) for i in range(5)][::-1]
    recon = solve(shots)
    assert [s.image_id for s in recon.shots] == [s.image_id for s in shots]
    doc = recon.to_opensfm()
    assert set(doc) == {"cameras", "shots", "points", "reference_lla"}
    first = doc["shots"][str(shots[0].image_id)]  # type: ignore[index]
    assert set(first) == {"camera", "rotation", "translation"} and len(first["rotation"]) == 3


def test_single_image_and_empty_sequence() -> None:
    recon = solve([shot(0, 0.0, 0.0, compass=45.0)])
    assert recon.shots[0].compass_angle_deg == pytest.approx(45.0)
    assert solve([shot(0, 0.0, 0.0)]).shots[0].compass_angle_deg == 0.0
    with pytest.raises(ValueError):
        solve([])


def test_duplicate_timestamps_do_not_break_the_filters() -> None:
    shots = [shot(i, 0.0, 5.0 * i, t_s=float(i // 3)) for i in range(12)]
    recon = solve(shots)
    for i, computed in enumerate(recon.shots):
        assert ground_offset_m(computed, 0.0, 5.0 * i) < 3.0 + 1e-6


def test_a_thousand_images_solve_quickly() -> None:
    shots = [shot(i, 3.0 * math.sin(i / 50.0) * 10, 4.0 * i, compass=None) for i in range(1000)]
    started = time.perf_counter()
    recon = solve(shots)
    assert time.perf_counter() - started < 5.0
    assert len(recon.shots) == 1000


# ---------------------------------------------------------------- merge_cc


def test_merge_components_joins_crossing_sequences_and_keeps_far_ones_apart() -> None:
    horizontal = [enu_point(10.0 * i - 200.0, 0.0) for i in range(41)]
    vertical = [enu_point(3.0, 10.0 * i - 200.0) for i in range(41)]
    far = [enu_point(5000.0, 10.0 * i) for i in range(20)]
    cc = merge_components({"h": horizontal, "v": vertical, "far": far, "empty": []})
    assert cc["h"] == cc["v"]
    assert len({cc["h"], cc["far"], cc["empty"]}) == 3
    assert all(0 < value < 2**53 for value in cc.values())
    # stable: same input, same ids; the id follows the group's smallest sequence id
    assert merge_components({"v": vertical, "h": horizontal}) == {"h": cc["h"], "v": cc["h"]}


def test_merge_components_respects_the_radius() -> None:
    a = [enu_point(0.0, 0.0)]
    b = [enu_point(29.0, 0.0)]
    c = [enu_point(29.0 + 31.0, 0.0)]
    cc = merge_components({"a": a, "b": b, "c": c})
    assert cc["a"] == cc["b"] != cc["c"]
    chained = merge_components({"a": a, "b": b, "c": [enu_point(55.0, 0.0)]})
    assert chained["a"] == chained["b"] == chained["c"]  # transitive


def test_merge_components_across_the_antimeridian() -> None:
    cc = merge_components({"w": [(179.99999, 0.0)], "e": [(-179.99999, 0.0)]})
    assert cc["w"] == cc["e"]


def test_merge_components_handles_a_hundred_thousand_points() -> None:
    rng = random.Random(7)
    sequences = {}
    for s in range(200):
        e0, n0 = rng.uniform(-20_000, 20_000), rng.uniform(-20_000, 20_000)
        heading = rng.uniform(0, 2 * math.pi)
        lat, lon, _ = enu_to_lla(
            np.column_stack(
                [
                    e0 + 3.0 * np.arange(500) * math.sin(heading),
                    n0 + 3.0 * np.arange(500) * math.cos(heading),
                    np.zeros(500),
                ]
            ),
            REF,
        ).T
        sequences[f"seq{s:04d}"] = list(zip(lon.tolist(), lat.tolist(), strict=True))
    started = time.perf_counter()
    cc = merge_components(sequences)
    assert time.perf_counter() - started < 10.0
    assert len(cc) == 200


@given(
    st.lists(
        st.tuples(
            st.floats(-500, 500),
            st.floats(-500, 500),
            st.integers(0, 5),
            st.one_of(st.none(), st.floats(-720, 720)),
            st.one_of(st.none(), st.floats(-100, 3000)),
            st.sampled_from(["perspective", "fisheye", "spherical", "equirectangular", "other"]),
            st.integers(0, 9),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_any_sequence_gives_finite_well_formed_shots(rows: list[tuple]) -> None:
    shots = []
    t = 0.0
    for i, (east, north, dt, compass, alt, camera_type, orientation) in enumerate(rows):
        t += dt
        shots.append(
            shot(
                i,
                east,
                north,
                t_s=t,
                compass=compass,
                altitude=alt,
                camera_type=camera_type,
                orientation=orientation,
            )
        )
    recon = solve(shots)
    assert [s.image_id for s in recon.shots] == [s.image_id for s in shots]
    for computed, source in zip(recon.shots, shots, strict=True):
        assert 0.0 <= computed.compass_angle_deg < 360.0
        values = [computed.lon, computed.lat, *computed.rotation, *computed.translation]
        assert all(math.isfinite(v) for v in values)
        assert (computed.altitude_m is None) == (source.altitude_m is None)
        assert (computed.camera_parameters is None) == (
            camera_type_is_spherical(source.camera_type)
        )
        assert computed.camera_id in recon.cameras


def camera_type_is_spherical(camera_type: str) -> bool:
    return camera_type in ("spherical", "equirectangular")
