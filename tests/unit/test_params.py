"""Parameter parsing: times, bbox, S2, cursors (spec §3.9–3.10)."""

from __future__ import annotations

import base64

import pytest
import s2cell
from hypothesis import given, settings
from hypothesis import strategies as st

from wayview.errors import InvalidParameter, MissingParameter
from wayview.graph.params import (
    decode_cursor,
    detection_search,
    encode_cursor,
    image_search,
    map_feature_search,
    parse_bbox,
    parse_bool,
    parse_id_list,
    parse_id_param,
    parse_limit,
    parse_s2,
    parse_sequence_ids,
    parse_time_ms,
)
from wayview.model.s2 import cell_level, leaf_cell, leaf_range
from wayview.settings import Settings


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


#: Text that parsers tend to trip on, mixed into arbitrary text (issue #14: fix the class).
_TRICKY = st.sampled_from([
    "²", "١١", "１２", "9" * 30, "9" * 5000, "-1", "1e309", "nan", "inf", "1_0", " ", "",
    ",", ",,,", "\x00", "2021-02-30", "9999-12-31T23:59:59.999999-23:59", "0001-01-01T00:00+23:59",
    "13.0,55.0,13.05,55.05", "-180,-90,180,90", "nan,0,0,0", "1e400,0,0,0", "true", "0",
])
_TEXT = st.one_of(_TRICKY, st.text(max_size=40), st.lists(_TRICKY, max_size=4).map(",".join))
_QUERY_KEYS = [
    "bbox", "start_captured_at", "end_captured_at", "limit", "after", "organization_id",
    "sequence_ids", "sequence_id", "creator_username", "image_ids", "s2", "is_pano", "make",
    "model", "camera_type", "object_values", "object_type", "start_first_seen_at",
    "end_first_seen_at", "start_last_seen_at", "end_last_seen_at", "values",
]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_QUERY_KEYS), _TEXT, max_size=8))
def test_params_searches_answer_any_query_with_a_search_or_e9_e10(query):
    """Whatever the query, the search parsers return a search or raise E9-E12, nothing else."""
    settings_ = Settings(_env_file=None)
    for parse in (image_search, map_feature_search, detection_search):
        try:
            parse(query, settings_)
        except (InvalidParameter, MissingParameter):
            pass


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_params_single_parsers_answer_any_text_with_a_value_or_e9(text):
    for parse in (lambda t: parse_bbox(t, 0.01), lambda t: parse_time_ms("t", t),
                  lambda t: parse_limit(t, Settings(_env_file=None)),
                  lambda t: parse_bool("b", t), lambda t: parse_id_param("i", t),
                  lambda t: parse_id_list("i", t, 100), lambda t: parse_sequence_ids("s", t),
                  parse_s2, lambda t: decode_cursor(t, 2), lambda t: decode_cursor(t, 1)):
        try:
            parse(text)
        except InvalidParameter:
            pass
