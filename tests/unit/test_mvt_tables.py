"""MVT encoder fast paths (wayview.tiles.mvt): value tables, flat line input, small layers.

Each path is checked by decoding with mapbox-vector-tile and, where two paths must agree, by
forcing the other path through its threshold and comparing bytes or decoded tiles.
"""

from __future__ import annotations

import mapbox_vector_tile
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mapbox_vector_tile.Mapbox import vector_tile_pb2

from wayview.tiles import mvt
from wayview.tiles.index import decode_lines, decode_parts, encode_parts
from wayview.tiles.mvt import Column, LineLayer, LineParts, PointLayer, encode_tile

INT64 = st.integers(-(2**63), 2**63 - 1)


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})


def raw_values(data: bytes, name: str) -> list[tuple[str, object]]:
    tile = vector_tile_pb2.tile()
    tile.ParseFromString(data)
    (layer,) = [layer for layer in tile.layers if layer.name == name]
    out = []
    for value in layer.values:
        ((field, v),) = value.ListFields()
        out.append((field.name, v))
    return out


def points(n: int, props: dict[str, Column], ids: np.ndarray | None = None) -> PointLayer:
    x = np.arange(n) % 4096
    return PointLayer("p", x, x[::-1].copy(), ids, props)


# Integer columns that take each way through `_int_table`: a small range (lookup table), all
# distinct over a wide range (one sort), a few or many repeated values over a wide range.
RNG = np.random.default_rng(11)
N = 700
SMALL_RANGE = RNG.integers(-40, 360, N)
DISTINCT = RNG.choice(2**53, N, replace=False).astype(np.int64)
FEW = RNG.choice(RNG.integers(0, 2**53, 25), N)
MANY_REPEATED = RNG.choice(RNG.integers(-(2**62), 2**62, 400), N)
NEAR_LIMITS = np.array([2**53 - 1, 2**53 - 2, 2**63 - 1, -(2**63), 0, -1] * 50)


@pytest.mark.parametrize(
    "values",
    [SMALL_RANGE, DISTINCT, FEW, MANY_REPEATED, NEAR_LIMITS],
    ids=["small-range", "distinct", "few", "many-repeated", "near-limits"],
)
def test_mvt_int_table_paths_round_trip_with_unique_values(values):
    layer = points(values.size, {"v": Column(values)})
    data = encode_tile([layer])
    decoded = [f["properties"]["v"] for f in decode(data)["p"]["features"]]
    assert decoded == values.tolist()
    table = raw_values(data, "p")
    assert len(table) == len(set(table)) == np.unique(values).size


def test_mvt_values_shared_across_columns_are_stored_once():
    # `small` repeats some of `ids`, `stamps` repeats some of both: every shared integer is one
    # value-table entry, whichever column holds the value first.
    ids = DISTINCT
    small = np.concatenate([ids[:3], ids[:3], [5, 6]])
    small = np.resize(small, N)
    stamps = ids.copy()
    stamps[::7] = 5
    layer = points(
        N,
        {
            "ids": Column(ids),
            "small": Column(small),
            "stamps": Column(stamps),
            "angle": Column(SMALL_RANGE),
        },
    )
    data = encode_tile([layer])
    features = decode(data)["p"]["features"]
    assert [f["properties"]["ids"] for f in features] == ids.tolist()
    assert [f["properties"]["small"] for f in features] == small.tolist()
    assert [f["properties"]["stamps"] for f in features] == stamps.tolist()
    assert [f["properties"]["angle"] for f in features] == SMALL_RANGE.tolist()
    table = raw_values(data, "p")
    everything = np.concatenate([ids, small, stamps, SMALL_RANGE])
    assert len(table) == len(set(table)) == np.unique(everything).size


def test_mvt_small_tables_get_one_byte_indices():
    # 2 booleans + 3 strings + 5 small integers come before the 700 distinct ids, so those
    # columns' value indices stay below 128 whatever the order of the columns.
    props = {
        "id": Column(DISTINCT),
        "kind": Column(np.arange(N) % 5),
        "name": Column([("a", "b", "c")[i % 3] for i in range(N)]),
        "flag": Column(np.arange(N) % 2 == 0),
    }
    tile = vector_tile_pb2.tile()
    tile.ParseFromString(encode_tile([points(N, props)]))
    (layer,) = tile.layers
    keys = list(layer.keys)
    for feature in layer.features:
        pairs = dict(zip(feature.tags[::2], feature.tags[1::2], strict=True))
        for name in ("kind", "name", "flag"):
            assert pairs[keys.index(name)] < 128


def test_mvt_int_columns_with_absent_values_and_all_absent():
    values = np.array([7, 8, 7, 9])
    layer = points(
        4,
        {
            "some": Column(values, np.array([True, False, True, False])),
            "none": Column(values, np.zeros(4, dtype=bool)),
            "all": Column(values, np.ones(4, dtype=bool)),
        },
    )
    features = decode(encode_tile([layer]))["p"]["features"]
    assert [f["properties"] for f in features] == [
        {"some": 7, "all": 7},
        {"all": 8},
        {"some": 7, "all": 7},
        {"all": 9},
    ]


def test_mvt_feature_ids_near_two_to_the_53():
    ids = np.array([2**53 - 1, 2**53 - 2, 0, 2**49, 2**49 - 1, 127, 128], dtype=np.uint64)
    layer = points(ids.size, {"id": Column(ids.astype(np.int64))}, ids)
    features = decode(encode_tile([layer]))["p"]["features"]
    assert [f["id"] for f in features] == ids.tolist()
    assert [f["properties"]["id"] for f in features] == ids.tolist()


@pytest.mark.parametrize("few", [0, 10_000])
def test_mvt_string_values_python_and_numpy_paths_agree(monkeypatch, few):
    strings = [f"séq-{i % 90}" if i % 11 else None for i in range(300)]
    layer = points(300, {"s": Column(strings), "t": Column(["x", "y", "z"] * 100)})
    expected = encode_tile([layer])
    monkeypatch.setattr(mvt, "_FEW_STRINGS", few)
    assert encode_tile([layer]) == expected
    decoded = [f["properties"].get("s") for f in decode(expected)["p"]["features"]]
    assert decoded == strings


@pytest.mark.parametrize("slack", [0, 10**9])
def test_mvt_int_table_thresholds_do_not_change_what_decodes(monkeypatch, slack):
    props = {"a": Column(SMALL_RANGE), "b": Column(FEW), "c": Column(MANY_REPEATED)}
    expected = decode(encode_tile([points(N, props)]))
    monkeypatch.setattr(mvt, "_LUT_SLACK", slack)
    data = encode_tile([points(N, props)])
    assert decode(data) == expected
    table = raw_values(data, "p")
    assert len(table) == len(set(table))


def test_mvt_empty_layers_and_empty_line_parts():
    no_points = PointLayer(
        "p",
        np.array([], dtype=np.int64),
        np.array([], dtype=np.int64),
        np.array([], dtype=np.uint64),
        {"a": Column(np.array([], np.int64))},
    )
    no_lines = LineLayer(
        "l", LineParts(np.empty((0, 2)), np.array([], np.int64), np.array([], np.int64))
    )
    empty_parts = LineLayer(
        "e",
        LineParts(np.empty((0, 2)), np.array([0, 0]), np.array([1, 1])),
        None,
        {"id": Column(["a", "b"])},
    )
    assert encode_tile([no_points, no_lines, empty_parts]) == b""


# --- flat line input ----------------------------------------------------------------------------

vertex = st.tuples(st.integers(-50, 50), st.integers(-50, 50))
features = st.lists(st.lists(st.lists(vertex, max_size=6), max_size=3), min_size=1, max_size=8)


def as_parts(feature_list: list[list[list[tuple[int, int]]]]) -> list[list[np.ndarray]]:
    return [[np.array(p, dtype=np.int64).reshape(-1, 2) for p in f] for f in feature_list]


def flat(feature_list: list[list[list[tuple[int, int]]]]) -> LineParts:
    parts = [np.array(p, dtype=np.int64).reshape(-1, 2) for f in feature_list for p in f]
    vertices = np.concatenate(parts) if parts else np.empty((0, 2), np.int64)
    return LineParts(
        vertices,
        np.array([len(p) for p in parts], dtype=np.int64),
        np.array([len(f) for f in feature_list], dtype=np.int64),
    )


@settings(deadline=None, max_examples=120)
@given(features, st.data())
def test_mvt_line_parts_encode_like_lists_of_parts(feature_list, data):
    n = len(feature_list)
    ids = np.array(
        data.draw(st.lists(st.integers(0, 2**53 - 1), min_size=n, max_size=n)), dtype=np.uint64
    )
    props = {"n": Column(np.arange(n)), "s": Column([f"f{i % 3}" for i in range(n)])}
    nested = LineLayer("l", as_parts(feature_list), ids, props)
    flat_layer = LineLayer("l", flat(feature_list), ids, props)
    assert encode_tile([flat_layer]) == encode_tile([nested])


@pytest.mark.parametrize(
    "parts",
    [
        LineParts(np.zeros((3, 2)), np.array([2]), np.array([1])),  # 3 vertices, 2 in parts
        LineParts(np.zeros((2, 2)), np.array([2]), np.array([2])),  # 2 parts claimed, 1 given
        LineParts(np.zeros((2, 3)), np.array([2]), np.array([1])),  # not (m, 2)
        LineParts(np.zeros((2, 2)), np.array([2, 0]), np.array([3, -1])),  # negative count
    ],
)
def test_mvt_line_parts_are_checked(parts):
    with pytest.raises(ValueError):
        encode_tile([LineLayer("l", parts)])


@settings(deadline=None, max_examples=150)
@given(
    st.lists(
        st.lists(
            st.lists(
                st.tuples(
                    st.integers(-(2**31) + 1, 2**31 - 1), st.integers(-(2**31) + 1, 2**31 - 1)
                ),
                min_size=0,
                max_size=5,
            ),
            min_size=1,
            max_size=3,
        ),
        max_size=6,
    )
)
def test_decode_lines_matches_decode_parts(lines):
    blobs = [encode_parts([np.array(p, dtype=np.int64) for p in line]) for line in lines]
    vertices, sizes, per_line = decode_lines(blobs)
    assert per_line.tolist() == [len(line) for line in lines]
    parts = np.split(vertices, np.cumsum(sizes)[:-1]) if len(sizes) else []
    k = 0
    for blob, count in zip(blobs, per_line.tolist(), strict=True):
        mine = [p.tolist() for p in parts[k : k + count] if len(p)]
        assert mine == [p.tolist() for p in decode_parts(blob)]
        k += count


def test_decode_lines_of_nothing():
    vertices, sizes, per_line = decode_lines([])
    assert vertices.shape == (0, 2) and sizes.size == 0 and per_line.size == 0


def test_mvt_layer_with_more_than_127_keys():
    # Key indices above 127 take two varint bytes; every column still decodes to its value.
    props = {f"k{i:03d}": Column(np.array([i, i + 1, 7])) for i in range(130)}
    props["s"] = Column(["a", None, "b"])
    props["u"] = Column(np.array([2**63 - 1, 0, 5], dtype=np.uint64))
    features = decode(encode_tile([points(3, props)]))["p"]["features"]
    for j, feature in enumerate(features):
        expected = {f"k{i:03d}": (i, i + 1, 7)[j] for i in range(130)}
        expected |= {"s": ("a", None, "b")[j], "u": (2**63 - 1, 0, 5)[j]}
        assert feature["properties"] == {k: v for k, v in expected.items() if v is not None}
