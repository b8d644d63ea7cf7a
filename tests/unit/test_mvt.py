"""MVT 2.1 encoder (wayview.tiles.mvt), checked by decoding with mapbox-vector-tile (spec §4)."""

from __future__ import annotations

import mapbox_vector_tile
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mapbox_vector_tile.Mapbox import vector_tile_pb2

from wayview.tiles.mvt import MAX_FEATURE_ID, Column, LineLayer, PointLayer, encode_tile

INT64 = st.integers(-(2**63), 2**63 - 1)
IDS = st.integers(0, MAX_FEATURE_ID - 1)
COORDS = st.integers(-(2**20), 2**20)


def decode(data: bytes) -> dict:
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})


def raw_layers(data: bytes) -> dict:
    """The protobuf messages, to check what the decoder hides (value types, absent ids)."""
    tile = vector_tile_pb2.tile()
    tile.ParseFromString(data)
    return {layer.name: layer for layer in tile.layers}


def typed_value(value) -> tuple[str, object]:
    """(field name, value) of a Value message; exactly one field is set."""
    ((field, v),) = value.ListFields()
    return field.name, v


def image_layer() -> PointLayer:
    """Three images as the `image` layer carries them (spec §4.3), one without organization."""
    ids = np.array([1_000_000_000_000_001, 7, 2**53 - 1], dtype=np.int64)
    return PointLayer(
        "image",
        x=np.array([0, 4096, 2048]),
        y=np.array([0, 100, 4096]),
        ids=ids.astype(np.uint64),
        properties={
            "id": Column(ids),
            "captured_at": Column(np.array([1_700_000_000_123, 1_600_000_000_000, 0])),
            "compass_angle": Column(np.array([0, 359, 180])),
            "sequence_id": Column(["s" * 22, "séquence-ünïcode-✓", "s" * 22]),
            "is_pano": Column(np.array([True, False, False])),
            "organization_id": Column(np.array([0, 42, 0]), np.array([False, True, False])),
            "creator_id": Column(np.array([5, 5, 6])),
        },
    )


def test_mvt_image_layer_decodes_with_types_and_ids():
    tile = decode(encode_tile([image_layer()]))
    layer = tile["image"]
    assert layer["extent"] == 4096 and layer["version"] == 2
    features = layer["features"]
    assert [f["id"] for f in features] == [1_000_000_000_000_001, 7, 2**53 - 1]
    assert [f["geometry"] for f in features] == [
        {"type": "Point", "coordinates": [0, 0]},
        {"type": "Point", "coordinates": [4096, 100]},
        {"type": "Point", "coordinates": [2048, 4096]},
    ]
    first, second, third = (f["properties"] for f in features)
    assert first == {
        "id": 1_000_000_000_000_001,
        "captured_at": 1_700_000_000_123,
        "compass_angle": 0,
        "sequence_id": "s" * 22,
        "is_pano": True,
        "creator_id": 5,
    }
    assert second["organization_id"] == 42 and second["sequence_id"] == "séquence-ünïcode-✓"
    assert "organization_id" not in third and third["captured_at"] == 0
    for props in (first, second, third):
        assert type(props["is_pano"]) is bool
        for key in ("id", "captured_at", "compass_angle", "creator_id"):
            assert type(props[key]) is int


def test_mvt_keys_and_values_are_deduplicated_per_layer():
    raw = raw_layers(encode_tile([image_layer()]))["image"]
    assert list(raw.keys) == [
        "id",
        "captured_at",
        "compass_angle",
        "sequence_id",
        "is_pano",
        "organization_id",
        "creator_id",
    ]
    values = [typed_value(v) for v in raw.values]
    assert len(values) == len(set(values))
    # 0 appears as captured_at and compass_angle, 5 twice as creator_id: stored once each.
    assert values.count(("uint_value", 0)) == 1 and values.count(("uint_value", 5)) == 1
    assert ("string_value", "s" * 22) in values and ("bool_value", False) in values


def test_mvt_integer_value_types_by_sign():
    layer = PointLayer(
        "p",
        x=np.array([1, 2, 3]),
        y=np.array([1, 2, 3]),
        ids=None,
        properties={"n": Column(np.array([-1, 2**63 - 1, -(2**63)]))},
    )
    data = encode_tile([layer])
    raw = raw_layers(data)["p"]
    kinds = {value: kind for kind, value in map(typed_value, raw.values)}
    assert kinds == {-1: "sint_value", 2**63 - 1: "uint_value", -(2**63): "sint_value"}
    decoded = [f["properties"]["n"] for f in decode(data)["p"]["features"]]
    assert decoded == [-1, 2**63 - 1, -(2**63)]


def test_mvt_features_without_ids_have_no_id_field():
    layer = PointLayer("p", x=np.array([5]), y=np.array([6]), ids=None, properties={})
    (feature,) = raw_layers(encode_tile([layer]))["p"].features
    assert not feature.HasField("id") and list(feature.tags) == []


def sequence_layer() -> LineLayer:
    return LineLayer(
        "sequence",
        lines=[
            [np.array([[0, 0], [0, 0], [10, 5], [10, 5], [20, -3]])],
            [np.array([[7, 7], [7, 7]]), np.array([[9, 9]])],  # no usable part: dropped
            [np.array([[100, 100], [200, 100]]), np.array([[5000, 5000], [4000, 4100], [0, 0]])],
        ],
        ids=None,
        properties={
            "id": Column(["seqA", "seqB", "seqC"]),
            "image_id": Column(np.array([11, 22, 33])),
            "captured_at": Column(np.array([1_600_000_000_000, 1, 2])),
            "is_pano": Column(np.array([False, True, True])),
            "organization_id": Column(np.array([0, 0, 9]), np.array([False, False, True])),
        },
    )


def test_mvt_sequence_lines_drop_duplicates_and_degenerate_features():
    data = encode_tile([sequence_layer()])
    layer = decode(data)["sequence"]
    assert layer["extent"] == 4096 and layer["version"] == 2
    first, third = layer["features"]
    assert first["geometry"] == {"type": "LineString", "coordinates": [[0, 0], [10, 5], [20, -3]]}
    assert first["properties"] == {
        "id": "seqA",
        "image_id": 11,
        "captured_at": 1_600_000_000_000,
        "is_pano": False,
    }
    assert third["geometry"] == {
        "type": "MultiLineString",
        "coordinates": [[[100, 100], [200, 100]], [[5000, 5000], [4000, 4100], [0, 0]]],
    }
    assert third["properties"]["organization_id"] == 9 and third["properties"]["id"] == "seqC"
    # Sequence features carry no MVT id (spec §4.3), and the dropped feature left no values behind.
    raw = raw_layers(data)["sequence"]
    assert not any(f.HasField("id") for f in raw.features)
    assert "seqB" not in [v.string_value for v in raw.values]


def test_mvt_line_geometry_commands_and_cursor():
    layer = LineLayer("l", lines=[[np.array([[1, 1], [3, 1]]), np.array([[3, 4], [0, 4]])]])
    (feature,) = raw_layers(encode_tile([layer]))["l"].features
    assert feature.type == vector_tile_pb2.tile.LineString
    # MoveTo(1) (1,1); LineTo(1) (+2,0); MoveTo(1) relative to (3,1): (0,+3); LineTo(1) (-3,0).
    assert list(feature.geometry) == [9, 2, 2, 10, 4, 0, 9, 0, 6, 10, 5, 0]


def test_mvt_tile_with_several_layers_and_empty_ones():
    empty_points = PointLayer("overview", x=np.array([]), y=np.array([]), ids=None, properties={})
    empty_lines = LineLayer("nothing", lines=[[np.array([[1, 1], [1, 1]])]], ids=None)
    data = encode_tile([empty_points, sequence_layer(), empty_lines, image_layer()])
    assert list(decode(data)) == ["sequence", "image"]
    assert encode_tile([empty_points, empty_lines]) == b""
    assert encode_tile([]) == b""


def test_mvt_custom_extent():
    layer = PointLayer("p", x=np.array([1]), y=np.array([2]))
    assert decode(encode_tile([layer], extent=512))["p"]["extent"] == 512


def test_mvt_accepts_float_coordinates_by_rounding():
    layer = PointLayer("p", x=np.array([1.4, 2.6]), y=np.array([-0.6, 3.5]))
    coords = [f["geometry"]["coordinates"] for f in decode(encode_tile([layer]))["p"]["features"]]
    assert coords == [[1, -1], [3, 4]]


@pytest.mark.parametrize(
    "layer,error",
    [
        (PointLayer("p", np.array([1]), np.array([1]), np.array([2**53])), ValueError),
        (PointLayer("p", np.array([1]), np.array([1]), np.array([-1])), ValueError),
        (PointLayer("p", np.array([1, 2]), np.array([1, 2]), np.array([1])), ValueError),
        (PointLayer("p", np.array([1, 2]), np.array([1])), ValueError),
        (PointLayer("p", np.array([2**30]), np.array([1])), ValueError),
        (
            PointLayer("p", np.array([1]), np.array([1]), None, {"a": Column(np.array([1, 2]))}),
            ValueError,
        ),
        (
            PointLayer("p", np.array([1]), np.array([1]), None, {"a": Column(np.array([0.5]))}),
            TypeError,
        ),
        (PointLayer("p", np.array([1]), np.array([1]), None, {"a": Column([3])}), TypeError),  # type: ignore[list-item]
        (
            PointLayer(
                "p",
                np.array([1]),
                np.array([1]),
                None,
                {"a": Column(np.array([2**64 - 1], dtype=np.uint64))},
            ),
            ValueError,
        ),
        (LineLayer("l", [[np.array([1, 2, 3])]]), ValueError),
    ],
)
def test_mvt_rejects_invalid_input(layer, error):
    with pytest.raises(error):
        encode_tile([layer])


def test_mvt_rejects_duplicate_layer_names():
    layer = PointLayer("p", np.array([1]), np.array([1]))
    with pytest.raises(ValueError, match="duplicate"):
        encode_tile([layer, layer])


def test_mvt_dense_tile_round_trips():
    rng = np.random.default_rng(3)
    n = 5000
    ids = rng.choice(np.arange(10**15, 10**15 + 10 * n), n, replace=False)
    seqs = [f"seq{i:019d}" for i in range(n // 40)]
    seq_of = rng.integers(0, len(seqs), n)
    layer = PointLayer(
        "image",
        x=rng.integers(0, 4097, n),
        y=rng.integers(0, 4097, n),
        ids=ids,
        properties={
            "id": Column(ids),
            "captured_at": Column(rng.integers(1_400_000_000_000, 1_750_000_000_000, n)),
            "sequence_id": Column([seqs[i] for i in seq_of]),
            "is_pano": Column(rng.random(n) < 0.2),
        },
    )
    features = decode(encode_tile([layer]))["image"]["features"]
    assert [f["id"] for f in features] == ids.tolist()
    assert [f["geometry"]["coordinates"] for f in features] == np.stack(
        [layer.x, layer.y], 1
    ).tolist()
    assert [f["properties"]["sequence_id"] for f in features] == [seqs[i] for i in seq_of]
    assert [f["properties"]["is_pano"] for f in features] == layer.properties[
        "is_pano"
    ].values.tolist()


# --- property-based round trips --------------------------------------------------------------------


@st.composite
def columns(draw: st.DrawFn, n: int) -> dict[str, tuple[Column, list[object]]]:
    """Random property columns for n features, each with the values a decoder should return."""
    out: dict[str, tuple[Column, list[object]]] = {}
    for i in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["int", "bool", "str"]))
        present = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        if kind == "int":
            values: list[object] = draw(st.lists(INT64, min_size=n, max_size=n))
            col = Column(np.array(values, dtype=np.int64), np.array(present, dtype=bool))
        elif kind == "bool":
            values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
            col = Column(np.array(values, dtype=bool), np.array(present, dtype=bool))
        else:
            values = draw(st.lists(st.text(max_size=12), min_size=n, max_size=n))
            col = Column([v if p else None for v, p in zip(values, present, strict=True)])
        expected = [v if p else None for v, p in zip(values, present, strict=True)]
        out[f"{kind}{i}"] = (col, expected)
    return out


def expected_properties(cols: dict[str, tuple[Column, list[object]]], i: int) -> dict[str, object]:
    return {k: values[i] for k, (_, values) in cols.items() if values[i] is not None}


@settings(deadline=None, max_examples=150)
@given(st.data())
def test_mvt_points_round_trip(data):
    n = data.draw(st.integers(1, 30))
    xs = data.draw(st.lists(COORDS, min_size=n, max_size=n))
    ys = data.draw(st.lists(COORDS, min_size=n, max_size=n))
    with_ids = data.draw(st.booleans())
    ids = data.draw(st.lists(IDS, min_size=n, max_size=n)) if with_ids else None
    cols = data.draw(columns(n))
    layer = PointLayer(
        "points ✓",
        x=np.array(xs),
        y=np.array(ys),
        ids=None if ids is None else np.array(ids, dtype=np.uint64),
        properties={k: c for k, (c, _) in cols.items()},
    )
    data_bytes = encode_tile([layer])
    values = [typed_value(v) for v in raw_layers(data_bytes)["points ✓"].values]
    assert len(values) == len(set(values))  # every value stored once per layer
    tile = decode(data_bytes)
    features = tile["points ✓"]["features"]
    assert [f["geometry"] for f in features] == [
        {"type": "Point", "coordinates": [x, y]} for x, y in zip(xs, ys, strict=True)
    ]
    assert [f["id"] for f in features] == (ids if ids is not None else [0] * n)
    for i, feature in enumerate(features):
        props = feature["properties"]
        assert props == expected_properties(cols, i)
        for key, value in props.items():
            assert type(value) is type(expected_properties(cols, i)[key])


def clean_parts(parts: list[list[tuple[int, int]]]) -> list[list[list[int]]]:
    """What the encoder keeps: parts without consecutive repeats and with ≥ 2 vertices."""
    out = []
    for part in parts:
        kept = [list(p) for j, p in enumerate(part) if j == 0 or p != part[j - 1]]
        if len(kept) >= 2:
            out.append(kept)
    return out


@settings(deadline=None, max_examples=150)
@given(st.data())
def test_mvt_lines_round_trip(data):
    n = data.draw(st.integers(1, 12))
    vertex = st.tuples(st.integers(-50, 50), st.integers(-50, 50)) | st.tuples(COORDS, COORDS)
    lines = data.draw(
        st.lists(
            st.lists(st.lists(vertex, min_size=0, max_size=8), min_size=0, max_size=3),
            min_size=n,
            max_size=n,
        )
    )
    cols = data.draw(columns(n))
    with_ids = data.draw(st.booleans())
    ids = data.draw(st.lists(IDS, min_size=n, max_size=n)) if with_ids else None
    layer = LineLayer(
        "lines",
        lines=[
            [np.array(part, dtype=np.int64).reshape(-1, 2) for part in feature] for feature in lines
        ],
        ids=None if ids is None else np.array(ids),
        properties={k: c for k, (c, _) in cols.items()},
    )
    data_bytes = encode_tile([layer])
    kept = [i for i, feature in enumerate(lines) if clean_parts(feature)]
    if not kept:
        assert data_bytes == b""
        return
    features = decode(data_bytes)["lines"]["features"]
    assert len(features) == len(kept)
    for i, feature in zip(kept, features, strict=True):
        parts = clean_parts(lines[i])
        if len(parts) == 1:
            assert feature["geometry"] == {"type": "LineString", "coordinates": parts[0]}
        else:
            assert feature["geometry"] == {"type": "MultiLineString", "coordinates": parts}
        assert feature["properties"] == expected_properties(cols, i)
        assert feature["id"] == (ids[i] if ids is not None else 0)


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_mvt_categorical_strings_decode_like_plain_strings(data):
    n = data.draw(st.integers(0, 40))
    categories = tuple(data.draw(st.lists(st.text(max_size=6), min_size=1, max_size=5,
                                          unique=True)))
    codes = data.draw(st.lists(st.integers(0, len(categories) - 1), min_size=n, max_size=n))
    other = data.draw(st.lists(st.sampled_from(["a", "b", categories[0]]), min_size=n,
                               max_size=n))
    x = np.arange(n) % 4096
    plain = PointLayer("p", x, x, None, {"s": Column([categories[c] for c in codes]),
                                         "o": Column(other)})
    coded = PointLayer("p", x, x, None, {"s": Column(np.array(codes, dtype=np.int64),
                                                     categories=categories),
                                         "o": Column(other)})
    a, b = decode(encode_tile([plain])), decode(encode_tile([coded]))
    assert a == b


def test_mvt_categorical_codes_are_checked():
    layer = PointLayer("p", np.array([1]), np.array([1]), None,
                       {"s": Column(np.array([3]), categories=("a",))})
    with pytest.raises(ValueError, match="category code out of range"):
        encode_tile([layer])


def test_mvt_categories_must_be_strings():
    layer = PointLayer("p", np.array([1, 2]), np.array([1, 2]), None,
                       {"s": Column(np.array([0, 1]), categories=("a", None))})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="categories must be strings"):
        encode_tile([layer])
