"""Parameter parsing: times, bbox, S2, cursors (spec §3.9–3.10)."""

from __future__ import annotations

import base64

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


def _cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "raw",
    [
        "99999999999999999999999:1",  # issue #14 item 8: OverflowError in the driver, a 500
        f"{2**63}:1",
        f"1:{-(2**63) - 1}",
        "1_000:1",  # int() accepts these; a cursor we made never holds them
        " 1:2",
        "+1:2",
        "1:2:3",
        "9" * 5000 + ":1",  # beyond int()'s digit limit
    ],
)
def test_params_cursor_out_of_range_or_malformed_is_e9(raw):
    with pytest.raises(InvalidParameter, match="after"):
        decode_cursor(_cursor_of(raw), 2)


def test_params_cursor_64_bit_extremes_round_trip():
    values = (-(2**63), 2**63 - 1)
    assert decode_cursor(encode_cursor(values), 2) == values


@given(st.tuples(st.integers(), st.integers()))
def test_params_cursor_any_integers_decode_to_int64_or_e9(values):
    try:
        decoded = decode_cursor(encode_cursor(values), 2)
    except InvalidParameter:
        assert not all(-(2**63) <= v < 2**63 for v in values)
    else:
        assert decoded == values


@pytest.mark.parametrize("path", [
    "/images?bbox=13.40,52.51,13.41,52.53&limit=1&after={c2}",
    "/map_features?bbox=13.40,52.51,13.41,52.53&after={c1}",
    "/detections?bbox=13.40,52.51,13.41,52.53&after={c1}",
])
async def test_params_huge_cursor_is_e9_on_every_search(client, seeded, path):
    """Issue #14 item 8: a cursor with a huge number was a 500 (OverflowError)."""
    huge = "9" * 30
    target = path.format(c2=_cursor_of(f"{huge}:{huge}"), c1=_cursor_of(huge))
    r = await client.get(target, headers={"Authorization": f"OAuth {seeded.client_token}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == "Invalid parameter after: invalid cursor"


@given(st.floats(-89.9, 89.9), st.floats(-179.9, 179.9), st.integers(0, 30))
def test_s2_leaf_in_range_of_its_cell_at_every_level(lat, lon, level):
    cell = s2cell.lat_lon_to_cell_id(lat, lon, level)
    assert cell_level(cell) == level
    low, high = leaf_range(cell)
    assert low <= leaf_cell(lat, lon) <= high
