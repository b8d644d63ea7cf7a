"""The plain-Python path for small point layers (`mvt._small_points`) against the vectorised one.

Both paths must write the same bytes (same value-table order) and raise the same errors; each
test forces a path by moving the `mvt._SMALL_POINTS` threshold and checks it was taken.
"""

from __future__ import annotations

from contextlib import ExitStack
from unittest import mock

import mapbox_vector_tile
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wayview.tiles import mvt
from wayview.tiles.mvt import MAX_FEATURE_ID, Column, LineLayer, LineParts, PointLayer, encode_tile
from wayview.tiles.varints import varint

INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(alphabet="ab✓é", max_size=3)


def encode(layers: list[PointLayer], *, small: bool, extent: int = 4096) -> bytes:
    """`encode_tile` on one path only; the other path's functions fail if they are reached."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(mvt, "_SMALL_POINTS", 10**9 if small else 0))
        unused = "_tags" if small else "_small_points"
        stack.enter_context(mock.patch.object(mvt, unused, side_effect=AssertionError(unused)))
        return encode_tile(layers, extent)


def both(layers: list[PointLayer], extent: int = 4096) -> bytes:
    """The tile, after checking that both paths write exactly the same bytes."""
    fast = encode(layers, small=True, extent=extent)
    assert fast == encode(layers, small=False, extent=extent)
    return fast


def outcome(layers: list[PointLayer], *, small: bool) -> tuple[type[BaseException], str] | bytes:
    try:
        return encode(layers, small=small)
    except (ValueError, TypeError) as exc:
        return type(exc), str(exc)


# --- random small point layers -------------------------------------------------------------------


@st.composite
def int_columns(draw: st.DrawFn, n: int, pool: list[int]) -> np.ndarray:
    """Integers of one dtype, drawing from a pool shared with other columns (deduplication)."""
    kind = draw(st.sampled_from(["int64", "uint64", "int32", "uint8"]))
    if kind == "int64":
        values = st.one_of(st.sampled_from(pool), INT64, st.integers(-3, 300))
    elif kind == "uint64":
        values = st.one_of(st.sampled_from([min(abs(v), 2**63 - 1) for v in pool]), st.integers(0, 2**63 - 1))
    elif kind == "int32":
        values = st.integers(-(2**31), 2**31 - 1)
    else:
        values = st.integers(0, 255)
    return np.array(draw(st.lists(values, min_size=n, max_size=n)), dtype=kind)


@st.composite
def columns(draw: st.DrawFn, n: int, pool: list[int], ids: np.ndarray | None) -> Column:
    """One property column of any kind, maybe with a present mask."""
    kind = draw(st.sampled_from(["int", "bool", "str", "category", "ids"]))
    mask = st.none() | st.lists(st.booleans(), min_size=n, max_size=n).map(np.array)
    if kind == "category":
        categories = tuple(draw(st.lists(TEXT, min_size=1, max_size=5)))  # may repeat
        codes = draw(st.lists(st.integers(0, len(categories) - 1), min_size=n, max_size=n))
        dtype = draw(st.sampled_from([np.int64, np.int32, np.uint16]))
        return Column(np.array(codes, dtype=dtype), categories=categories)
    if kind == "str":
        strings = draw(st.lists(st.none() | TEXT, min_size=n, max_size=n))
        values: np.ndarray | list[str | None] = strings
        if draw(st.booleans()):
            values = np.array(strings, dtype=object)
        return Column(values, draw(mask))
    if kind == "bool":
        return Column(np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))), draw(mask))
    if kind == "ids" and ids is not None:  # the `id` property: same integers as the feature ids
        return Column(ids.astype(np.int64), draw(mask))
    return Column(draw(int_columns(n, pool)), draw(mask))


@st.composite
def point_layers(draw: st.DrawFn, max_n: int = 12, name: str = "p") -> PointLayer:
    n = draw(st.integers(1, max_n))
    coord = st.integers(-(2**30) + 1, 2**30 - 1) | st.integers(-70, 4200)
    x = np.array(draw(st.lists(coord, min_size=n, max_size=n)))
    y = np.array(draw(st.lists(coord, min_size=n, max_size=n)))
    if draw(st.booleans()):
        x = x.astype(np.float64) + 0.25
    ids = draw(
        st.none()
        | st.lists(st.integers(0, MAX_FEATURE_ID - 1) | st.integers(0, 300), min_size=n,
                   max_size=n).map(lambda v: np.array(v, dtype=np.uint64))
    )
    pool = draw(st.lists(INT64, min_size=1, max_size=4))
    names = draw(st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=4), max_size=7,
                          unique=True))
    props = {key: draw(columns(n, pool, ids)) for key in names}
    return PointLayer(name, x, y, ids, props)


@settings(max_examples=250, deadline=None)
@given(point_layers(), st.sampled_from([4096, 512, 2**20]))
def test_small_path_writes_the_vectorised_bytes(layer, extent):
    both([layer], extent)


@settings(max_examples=25, deadline=None)
@given(point_layers(max_n=64, name="a"), point_layers(name="b"))
def test_small_path_in_a_tile_with_several_layers(first, second):
    both([first, second])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=20))
def test_varints_match_varint(values):
    assert mvt._varints(values) == [varint(v) for v in values]


def test_varints_at_byte_boundaries():
    edges = [v for k in range(1, 10) for v in (2 ** (7 * k) - 1, 2 ** (7 * k))]
    assert mvt._varints(edges) == [varint(v) for v in edges]


# --- decoded with mapbox-vector-tile -------------------------------------------------------------


def image_points(n: int, *, detailed: bool, seed: int = 3) -> PointLayer:
    """Points with the columns of the service's image layers (`service._image_points`)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(10**14, 10**15, n)
    props = {"id": Column(ids), "captured_at": Column(rng.integers(1_500_000_000_000, 1_700_000_000_000, n))}
    if detailed:
        props["compass_angle"] = Column(rng.integers(0, 360, n))
    keys = tuple(f"seq{i:019d}" for i in range(max(1, n // 4)))
    props["sequence_id"] = Column(rng.integers(0, len(keys), n), categories=keys)
    props["is_pano"] = Column(rng.random(n) < 0.2)
    if detailed:
        orgs = np.where(rng.random(n) < 0.5, 0, rng.integers(10**14, 10**15, n))
        props["organization_id"] = Column(orgs, orgs != 0)
        props["creator_id"] = Column(rng.choice(rng.integers(10**5, 10**14, 3), n))
    x, y = rng.integers(-64, 4160, n), rng.integers(-64, 4160, n)
    return PointLayer("image", x, y, ids.astype(np.uint64), props)


def test_small_path_decodes_to_the_input():
    layer = image_points(9, detailed=True)
    tile = mapbox_vector_tile.decode(both([layer]), default_options={"y_coord_down": True})
    features = tile["image"]["features"]
    assert [f["id"] for f in features] == layer.ids.tolist()
    assert [f["geometry"]["coordinates"] for f in features] == np.c_[layer.x, layer.y].tolist()
    for i, feature in enumerate(features):
        expected = {}
        for key, col in layer.properties.items():
            if col.present is not None and not col.present[i]:
                continue
            value = col.values[i]
            expected[key] = col.categories[value] if col.categories else value.item()
        assert feature["properties"] == expected
        assert type(feature["properties"]["is_pano"]) is bool


@pytest.mark.parametrize("detailed", [False, True])
def test_threshold_picks_the_path_and_both_agree(detailed):
    for n in (1, mvt._SMALL_POINTS, mvt._SMALL_POINTS + 1):
        layer = image_points(n, detailed=detailed)
        with mock.patch.object(mvt, "_small_points", wraps=mvt._small_points) as small:
            data = encode_tile([layer])
        assert small.called == (n <= mvt._SMALL_POINTS)
        assert data == both([layer])


def test_features_without_tags_and_columns_without_values():
    n = 4
    layer = PointLayer("p", np.arange(n), np.arange(n), None, {
        "gone": Column(np.arange(n), np.zeros(n, dtype=bool)),  # no key at all
        "none": Column([None] * n),
        "some": Column(["x", None, None, "y"]),
        "flag": Column(np.array([True, False, True, True]), np.array([1, 0, 0, 0], dtype=bool)),
    })
    raw = both([layer])
    decoded = mapbox_vector_tile.decode(raw)["p"]["features"]
    assert [f["properties"] for f in decoded] == [{"some": "x", "flag": True}, {}, {}, {"some": "y"}]


def test_many_keys_and_value_slots_beyond_one_byte_tables():
    n = 64  # 20 columns of distinct integers: over 1024 values, so two-byte tag indices
    props = {f"k{i}": Column(np.arange(n) * 1000 + i) for i in range(20)}
    props |= {f"b{i}": Column(np.arange(n) % 2 == 0) for i in range(120)}  # over 127 keys
    data = both([PointLayer("p", np.arange(n), np.arange(n), None, props)])
    features = mapbox_vector_tile.decode(data)["p"]["features"]
    assert features[5]["properties"]["k19"] == 5019 and features[5]["properties"]["b119"] is False


# --- errors --------------------------------------------------------------------------------------

N3 = np.arange(3)


def pts(props: dict[str, Column] | None = None, ids: object = None, x: object = N3,
        y: object = N3) -> list[PointLayer]:
    return [PointLayer("p", x, y, ids, props or {})]


ERRORS = {
    "column length": (pts({"a": Column(np.arange(4))}), ValueError),
    "string column length": (pts({"a": Column(["a"])}), ValueError),
    "id too large": (pts(ids=np.array([0, 1, MAX_FEATURE_ID], dtype=np.uint64)), ValueError),
    "negative id": (pts(ids=np.array([0, -1, 2])), ValueError),
    "ids length": (pts(ids=np.array([1, 2])), ValueError),
    "float ids": (pts(ids=np.array([1.0, 2.0, 3.0])), TypeError),
    "coordinate too large": (pts(x=np.array([0, 2**30, 1])), ValueError),
    "coordinate too small": (pts(y=np.array([0, -(2**30), 1])), ValueError),
    "string coordinates": (pts(x=np.array(["a", "b", "c"])), TypeError),
    "x and y sizes": (pts(y=np.arange(4)), ValueError),
    "uint64 over int64": (pts({"a": Column(np.array([1, 2**63, 0], dtype=np.uint64))}),
                          ValueError),
    "float column": (pts({"a": Column(np.array([1.0, 2.0, 3.0]))}), TypeError),
    "complex column": (pts({"a": Column(np.ones(3, dtype=complex))}), TypeError),
    "not a string": (pts({"a": Column(["a", 5, None])}), TypeError),
    "bytes string": (pts({"a": Column([b"a", "b", "c"])}), TypeError),
    "category code too large": (pts({"a": Column(np.array([0, 2, 1]), categories=("x", "y"))}),
                                ValueError),
    "negative category code": (pts({"a": Column(np.array([0, -1, 1]), categories=("x", "y"))}),
                               ValueError),
    "categories with present": (pts({"a": Column(np.zeros(3, int), np.ones(3, bool), ("x",))}),
                                ValueError),
    "category not a string": (pts({"a": Column(np.zeros(3, int), categories=(5,))}),
                              TypeError),
    "present shape": (pts({"a": Column(np.arange(3), np.ones(4, dtype=bool))}), ValueError),
    "present 2-d": (pts({"a": Column(["a", "b", "c"], np.ones((3, 1), dtype=bool))}), ValueError),
    "2-d column": (pts({"a": Column(np.ones((3, 2), dtype=bool))}), ValueError),
    "2-d codes": (pts({"a": Column(np.zeros((3, 2), int), categories=("x",))}), ValueError),
    "duplicate layer names": (pts() + pts(), ValueError),
}


@pytest.mark.parametrize(("layers", "error"), ERRORS.values(), ids=ERRORS.keys())
def test_both_paths_raise_the_same_errors(layers, error):
    fast = outcome(layers, small=True)
    assert fast == outcome(layers, small=False)
    assert isinstance(fast, tuple) and fast[0] is error, fast


def test_masked_out_unsupported_column_is_skipped_on_both_paths():
    props = {"a": Column(np.ones(3), np.zeros(3, dtype=bool)), "b": Column(np.arange(3))}
    both(pts(props))


# --- small line layers ---------------------------------------------------------------------------


def encode_lines(layers: list[LineLayer], *, small: bool) -> bytes:
    """`encode_tile` with line layers on one path only (`_small_lines` or `_tags`)."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(mvt, "_SMALL_LINES", 10**9 if small else 0))
        unused = "_tags" if small else "_small_lines"
        stack.enter_context(mock.patch.object(mvt, unused, side_effect=AssertionError(unused)))
        return encode_tile(layers)


@st.composite
def line_layers(draw: st.DrawFn, max_n: int = 10) -> LineLayer:
    """Lines with repeated vertices, parts of fewer than two vertices and features that lose
    every part (so `kept` is a subset), as lists of parts or as `LineParts`."""
    n = draw(st.integers(1, max_n))
    coord = st.integers(-3, 3) | st.integers(-70, 4200) | st.integers(-(2**29), 2**29)
    features = [
        [np.array(draw(st.lists(st.tuples(coord, coord), max_size=6)), dtype=np.int64).reshape(-1, 2)
         for _ in range(draw(st.integers(1, 3)))]
        for _ in range(n)
    ]
    lines: list[list[np.ndarray]] | LineParts = features
    if draw(st.booleans()):
        parts = [p for f in features for p in f]
        lines = LineParts(np.concatenate(parts).reshape(-1, 2), np.array([len(p) for p in parts]),
                          np.array([len(f) for f in features]))
    ids = draw(st.none() | st.lists(st.integers(0, MAX_FEATURE_ID - 1) | st.integers(0, 300),
                                    min_size=n, max_size=n).map(lambda v: np.array(v, np.uint64)))
    pool = draw(st.lists(INT64, min_size=1, max_size=4))
    names = draw(st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=4), max_size=7,
                          unique=True))
    return LineLayer("l", lines, ids, {key: draw(columns(n, pool, ids)) for key in names})


@settings(max_examples=250, deadline=None)
@given(line_layers())
def test_small_line_path_writes_the_vectorised_bytes(layer):
    try:
        fast = encode_lines([layer], small=True)
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc), match=None):
            encode_lines([layer], small=False)
        return
    assert fast == encode_lines([layer], small=False)


def test_small_line_path_decodes_to_the_input_and_takes_the_threshold():
    rng = np.random.default_rng(5)
    for n in (1, 4, mvt._SMALL_LINES, mvt._SMALL_LINES + 1):
        lines = [[rng.integers(0, 4096, (int(rng.integers(2, 40)), 2))] for _ in range(n)]
        keys = tuple(f"seq{i:019d}" for i in range(n))
        orgs = np.where(rng.random(n) < 0.5, 0, rng.integers(10**14, 10**15, n))
        props = {"id": Column(np.arange(n), categories=keys),
                 "image_id": Column(rng.integers(10**14, 10**15, n)),
                 "is_pano": Column(rng.random(n) < 0.3),
                 "organization_id": Column(orgs, orgs != 0)}
        layer = LineLayer("sequence", lines, None, props)
        with mock.patch.object(mvt, "_small_lines", wraps=mvt._small_lines) as small:
            data = encode_tile([layer])
        assert small.called == (n <= mvt._SMALL_LINES)
        assert data == encode_lines([layer], small=n > mvt._SMALL_LINES)
        decoded = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})
        features = decoded["sequence"]["features"]
        assert [f["properties"]["id"] for f in features] == list(keys)
        assert [f["geometry"]["coordinates"] for f in features[:3]] == [
            [list(map(int, v)) for v in _dedupe(line[0])] for line in lines[:3]]
        assert [f["properties"].get("organization_id") for f in features] == [
            int(o) if o else None for o in orgs]


def _dedupe(vertices: np.ndarray) -> list[np.ndarray]:
    """Vertices without consecutive repeats (as the encoder drops them)."""
    return [v for i, v in enumerate(vertices) if i == 0 or (v != vertices[i - 1]).any()]
