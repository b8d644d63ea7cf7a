"""Tests of wayview.ingest.sequencing: ordering photos and cutting them into sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wayview.ingest.exif import PhotoMetadata
from wayview.ingest.sequencing import SourcePhoto, cut_sequences, haversine_m

T0_MS = 1_700_000_000_000
LAT0, LON0 = 55.7, 13.2
METRE_DEG = 1 / 111_195  # one metre of latitude, in degrees (haversine sphere)


def photo(
    name: str,
    t_s: float,
    north_m: float = 0.0,
    *,
    make: str | None = "Make",
    model: str | None = "Model",
) -> SourcePhoto:
    meta = PhotoMetadata(
        lat=LAT0 + north_m * METRE_DEG,
        lon=LON0,
        captured_at_ms=T0_MS + round(t_s * 1000),
        width=64,
        height=48,
        content_sha256=name,
        make=make,
        model=model,
    )
    return SourcePhoto(source=name, metadata=meta)


def cut(
    photos: list[SourcePhoto],
    *,
    time_s: float = 60,
    distance_m: float = 100,
    length: int = 1000,
) -> list[list[str]]:
    sequences = cut_sequences(
        photos, max_time_gap_s=time_s, max_distance_gap_m=distance_m, max_sequence_length=length
    )
    return [[p.source for p in seq] for seq in sequences]


def test_sequencing_empty_input_gives_no_sequences() -> None:
    assert cut([]) == []


def test_sequencing_one_photo_is_one_sequence() -> None:
    assert cut([photo("a", 0)]) == [["a"]]


def test_sequencing_sorts_by_capture_time() -> None:
    photos = [photo("c", 20), photo("a", 0), photo("b", 10)]
    assert cut(photos) == [["a", "b", "c"]]


def test_sequencing_ties_in_time_are_ordered_by_name() -> None:
    photos = [photo("img_3", 5), photo("img_1", 5), photo("img_2", 5)]
    assert cut(photos) == [["img_1", "img_2", "img_3"]]


def test_sequencing_time_gap_above_limit_cuts() -> None:
    photos = [photo("a", 0), photo("b", 60), photo("c", 120.001)]
    assert cut(photos, time_s=60) == [["a", "b"], ["c"]]


def test_sequencing_time_gap_at_limit_does_not_cut() -> None:
    assert cut([photo("a", 0), photo("b", 30)], time_s=30) == [["a", "b"]]


def test_sequencing_distance_gap_above_limit_cuts() -> None:
    photos = [photo("a", 0, 0), photo("b", 1, 90), photo("c", 2, 200)]
    assert cut(photos, distance_m=100) == [["a", "b"], ["c"]]


def test_sequencing_distance_is_measured_between_neighbours_not_from_start() -> None:
    photos = [photo(f"p{i}", i, i * 50) for i in range(10)]  # 450 m in 50 m steps
    assert cut(photos, distance_m=100) == [[f"p{i}" for i in range(10)]]


def test_sequencing_camera_make_change_cuts() -> None:
    photos = [photo("a", 0), photo("b", 1, make="Other"), photo("c", 2, make="Other")]
    assert cut(photos) == [["a"], ["b", "c"]]


def test_sequencing_camera_model_change_cuts() -> None:
    photos = [photo("a", 0), photo("b", 1, model="Other")]
    assert cut(photos) == [["a"], ["b"]]


def test_sequencing_unknown_camera_differs_from_a_known_one() -> None:
    photos = [photo("a", 0), photo("b", 1, make=None, model=None)]
    assert cut(photos) == [["a"], ["b"]]


def test_sequencing_max_length_splits_long_runs() -> None:
    photos = [photo(f"p{i}", i) for i in range(5)]
    assert cut(photos, length=2) == [["p0", "p1"], ["p2", "p3"], ["p4"]]


def test_sequencing_max_length_restarts_after_another_cut() -> None:
    photos = [photo("a", 0), photo("b", 1), photo("c", 500), photo("d", 501), photo("e", 502)]
    assert cut(photos, length=2) == [["a", "b"], ["c", "d"], ["e"]]


def test_sequencing_rejects_zero_length() -> None:
    with pytest.raises(ValueError):
        cut([photo("a", 0)], length=0)


def test_sequencing_haversine_matches_known_distance() -> None:
    # Berlin Alexanderplatz → Brandenburger Tor: about 2.5 km.
    assert haversine_m(52.5219, 13.4132, 52.5163, 13.3777) == pytest.approx(2_480, rel=0.02)
    assert haversine_m(10.0, 20.0, 10.0, 20.0) == 0.0


@given(
    st.lists(
        st.tuples(
            st.integers(0, 600),
            st.floats(-500, 500),
            st.sampled_from(["A", "B"]),
        ),
        max_size=40,
    ),
    st.integers(1, 6),
)
def test_sequencing_partitions_the_sorted_photos(
    specs: list[tuple[int, float, str]], length: int
) -> None:
    photos = [photo(f"p{i:03d}", t, north, make=make) for i, (t, north, make) in enumerate(specs)]
    sequences = cut_sequences(
        photos, max_time_gap_s=60, max_distance_gap_m=100, max_sequence_length=length
    )
    flat = [p for seq in sequences for p in seq]
    assert flat == sorted(photos, key=lambda p: (p.metadata.captured_at_ms, p.source))
    for seq in sequences:
        assert 1 <= len(seq) <= length
        for prev, cur in zip(seq, seq[1:], strict=False):
            assert cur.metadata.captured_at_ms - prev.metadata.captured_at_ms <= 60_000
            assert cur.metadata.make == prev.metadata.make
            distance = haversine_m(
                prev.metadata.lat, prev.metadata.lon, cur.metadata.lat, cur.metadata.lon
            )
            assert distance <= 100
