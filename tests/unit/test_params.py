"""Parameter parsing: times, bbox, S2, cursors (spec §3.9–3.10)."""

from __future__ import annotations

import pytest
import s2cell
from hypothesis import given
from hypothesis import strategies as st

from wayview.errors import InvalidParameter
from wayview.graph.params import decode_cursor, encode_cursor, parse_bbox, parse_time_ms
from wayview.model.s2 import cell_level, leaf_cell, leaf_range


@pytest.mark.parametrize(
    "text,ms",
    [
        ("2022-08-16T16:42:46Z", 1660668166000),
        ("2022-08-16T16:42:46+00:00", 1660668166000),
        ("2022-08-16T16:42:46+0000", 1660668166000),
        ("2022-08-16T18:42:46+02:00", 1660668166000),
        ("2022-08-16T16:42:46.250Z", 1660668166250),
        ("2022-08-16T16:42:46", 1660668166000),
        ("2022-08-16", 1660608000000),
    ],
)
def test_params_time_formats(text, ms):
    assert parse_time_ms("t", text) == ms


def test_params_bbox_area_zero_means_unlimited():
    assert parse_bbox("-180,-90,180,90", 0) == (-180.0, -90.0, 180.0, 90.0)


@given(st.tuples(st.integers(0, 2**53), st.integers(0, 2**53)))
def test_params_cursor_round_trip(values):
    assert decode_cursor(encode_cursor(values), 2) == values


@given(st.text(max_size=20))
def test_params_cursor_garbage_is_e9(text):
    try:
        decode_cursor(text, 2)
    except InvalidParameter:
        pass


@given(st.floats(-89.9, 89.9), st.floats(-179.9, 179.9), st.integers(0, 30))
def test_s2_leaf_in_range_of_its_cell_at_every_level(lat, lon, level):
    cell = s2cell.lat_lon_to_cell_id(lat, lon, level)
    assert cell_level(cell) == level
    low, high = leaf_range(cell)
    assert low <= leaf_cell(lat, lon) <= high
