"""wayview.tiles.mvt: a numpy-vectorised Mapbox Vector Tile 2.1 encoder for point and line layers.

The protobuf bytes are written directly (no protobuf dependency), following ``vector_tile.proto``
of the MVT 2.1 specification::

    Tile    { repeated Layer layers = 3; }
    Layer   { required uint32 version = 15; required string name = 1;
              repeated Feature features = 2; repeated string keys = 3;
              repeated Value values = 4; optional uint32 extent = 5 [default = 4096]; }
    Feature { optional uint64 id = 1; repeated uint32 tags = 2 [packed = true];
              optional GeomType type = 3; repeated uint32 geometry = 4 [packed = true]; }
    Value   { string_value = 1; float_value = 2; double_value = 3; int_value = 4;
              uint_value = 5; sint_value = 6; bool_value = 7; }

How it is fast: a feature is a fixed sequence of small parts (field keys, lengths, the id, one
key/value index pair per property, the geometry integers), and all of them are varints. Each part
is encoded for *all* features at once into a ``(width, n)`` byte matrix whose width is the longest
varint of that part, with a mask of the bytes actually used (`_varint_cols`). The parts are
stacked and the mask compresses them into the features' bytes in one step; lengths
of nested messages are sums of the parts' byte counts, so nothing is encoded twice. Line geometry
has a variable number of integers per feature, so it is encoded as one flat varint stream and
interleaved with the fixed part by index arithmetic (`_interleave`). Integer and boolean entries
of the value table are built the same way; only strings (layer names, keys, string values) go
through Python ``bytes``.

Encoding choices (COMPATIBILITY.md §4): layer version 2; integer properties use ``uint_value``
when ≥ 0 and ``sint_value`` (zigzag) when negative; booleans ``bool_value``; strings
``string_value``; keys and values deduplicated per layer; feature ids in ``0 .. 2**53 - 1``
(exact in JavaScript). Field order inside a layer is name, features, keys, values, extent, version
(protobuf readers accept any order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["LAYER_VERSION", "MAX_FEATURE_ID", "Column", "LineLayer", "PointLayer", "encode_tile"]

U8: TypeAlias = npt.NDArray[np.uint8]
U64: TypeAlias = npt.NDArray[np.uint64]
I64: TypeAlias = npt.NDArray[np.int64]
Bools: TypeAlias = npt.NDArray[np.bool_]

MAX_FEATURE_ID = 2**53  # exclusive; ids must survive JavaScript numbers (COMPATIBILITY.md §4.3)
LAYER_VERSION = 2

# Field keys, (field_number << 3) | wire_type; wire type 0 = varint, 2 = length-delimited.
_TILE_LAYERS = 0x1A  # Tile.layers = 3
_LAYER_NAME = 0x0A  # Layer.name = 1
_LAYER_FEATURES = 0x12  # Layer.features = 2
_LAYER_KEYS = 0x1A  # Layer.keys = 3
_LAYER_VALUES = 0x22  # Layer.values = 4
_LAYER_EXTENT = 0x28  # Layer.extent = 5
_LAYER_VERSION = 0x78  # Layer.version = 15
_FEATURE_ID = 0x08  # Feature.id = 1
_FEATURE_TAGS = 0x12  # Feature.tags = 2 (packed)
_FEATURE_TYPE = 0x18  # Feature.type = 3
_FEATURE_GEOMETRY = 0x22  # Feature.geometry = 4 (packed)
_VALUE_STRING = 0x0A  # Value.string_value = 1
_VALUE_UINT = 0x28  # Value.uint_value = 5
_VALUE_SINT = 0x30  # Value.sint_value = 6 (zigzag)
_VALUE_BOOL = 0x38  # Value.bool_value = 7

_POINT = 1  # GeomType
_LINESTRING = 2
_MOVE_TO_1 = (1 << 3) | 1  # command integer: MoveTo, count 1
_LINE_TO = 2  # command id; the count goes in the upper bits


@dataclass(frozen=True, slots=True)
class Column:
    """One property column of a layer, one entry per feature.

    ``values`` is an integer ndarray (encoded as integers), a bool ndarray (``bool_value``), or a
    list (or str/object ndarray) of strings where ``None`` means absent. ``present`` is an optional
    bool mask: ``None`` means present for every feature (whose string value is not ``None``).
    """

    values: np.ndarray | list[str | None]
    present: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class PointLayer:
    """A layer of single-point features at integer tile coordinates ``x``, ``y`` (y down)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray | None = None
    properties: dict[str, Column] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LineLayer:
    """A layer of line features; each feature is a list of ``(n, 2)`` integer parts.

    A feature with several parts is a MultiLineString.
    """

    name: str
    lines: list[list[np.ndarray]]
    ids: np.ndarray | None = None
    properties: dict[str, Column] = field(default_factory=dict)


def encode_tile(layers: Sequence[PointLayer | LineLayer], extent: int = 4096) -> bytes:
    """Encode layers as one MVT 2.1 tile; empty layers are skipped and an empty tile is ``b""``.

    Points are one MoveTo each. Lines drop consecutive duplicate vertices, then parts with fewer
    than two vertices, then features left without parts (with their ids and properties).

    Args:
        layers: point and line layers, written in this order.
        extent: tile extent written to every layer.

    Returns:
        The raw (uncompressed) protobuf bytes.

    Raises:
        ValueError: a column, id or coordinate array does not match the feature count, a feature
            id is outside ``0 .. 2**53 - 1``, or two layers share a name.
        TypeError: a column holds neither integers, booleans nor strings.

    One point with feature id 7 at (25, 17), no properties:

    >>> import numpy as np
    >>> encode_tile([PointLayer("p", x=np.array([25]), y=np.array([17]), ids=np.array([7]))]).hex(" ")
    '1a 13 0a 01 70 12 09 08 07 18 01 22 03 09 32 22 28 80 20 78 02'
    >>> encode_tile([PointLayer("image", x=np.array([]), y=np.array([]))])
    b''
    """
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate layer names in {names}")
    out = []
    for layer in layers:
        body = _encode_layer(layer, extent)
        if body:
            out.append(_field(_TILE_LAYERS, body))
    return b"".join(out)


# --- varints -------------------------------------------------------------------------------------


def _varint(v: int) -> bytes:
    """The varint of one non-negative integer (scalar path for headers and strings)."""
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field(key: int, payload: bytes) -> bytes:
    """A length-delimited field (one-byte key): key, varint length, payload."""
    return bytes((key,)) + _varint(len(payload)) + payload


def _varint_len(v: U64) -> I64:
    """Byte length of the varint of each value (1..10)."""
    n = np.ones(v.shape, dtype=np.int64)
    top = int(v.max()) if v.size else 0
    k = 1
    while k < 10 and top >= 1 << (7 * k):
        n += v >= np.uint64(1 << (7 * k))
        k += 1
    return n


def _zigzag(v: npt.ArrayLike) -> U64:
    """Zigzag-encode signed 64-bit integers: 0, -1, 1, -2, … → 0, 1, 2, 3, …."""
    a = np.asarray(v, dtype=np.int64)
    return ((a << np.int64(1)) ^ (a >> np.int64(63))).view(np.uint64)


@dataclass(frozen=True, slots=True)
class _Cols:
    """Per-feature bytes, feature ``f`` in column ``f``: ``data`` (width, n), ``valid`` mask.

    ``lens[f]`` is the number of valid bytes of feature ``f``. Features run along the last axis so
    that every numpy operation loops over features (long) rather than over bytes (a few).
    """

    data: U8
    valid: Bools
    lens: I64


def _varint_cols(v: U64, present: Bools | None = None) -> _Cols:
    """The varint of ``v[f]`` in column ``f``, padded to the longest; absent features are empty."""
    lens = _varint_len(v)
    if present is not None:
        lens = np.where(present, lens, 0)
    width = int(lens.max()) if lens.size else 0
    if width <= 1:
        return _Cols(v.astype(np.uint8)[None, :], (lens > 0)[None, :], lens)
    data = np.empty((width, v.size), dtype=np.uint8)
    valid = np.empty((width, v.size), dtype=bool)
    low7 = np.uint64(0x7F)
    for k in range(width):
        data[k] = ((v >> np.uint64(7 * k)) & low7).astype(np.uint8)
        data[k] |= (lens > k + 1).astype(np.uint8) << np.uint8(7)  # continuation bit
        np.greater(lens, k, out=valid[k])
    return _Cols(data, valid, lens)


def _const_cols(raw: bytes, n: int, present: Bools | None = None) -> _Cols:
    """The same bytes for every feature (or only for those where ``present``)."""
    data = np.broadcast_to(np.frombuffer(raw, dtype=np.uint8)[:, None], (len(raw), n))
    if present is None:
        return _Cols(data, np.ones((len(raw), n), dtype=bool), np.full(n, len(raw), np.int64))
    valid = np.broadcast_to(present[None, :], (len(raw), n))
    return _Cols(data, valid, np.where(present, len(raw), 0).astype(np.int64))


def _join(parts: Sequence[_Cols]) -> _Cols:
    """Parts one after the other: feature ``f`` gets every part's bytes for ``f`` in order."""
    return _Cols(
        np.concatenate([p.data for p in parts], axis=0),
        np.concatenate([p.valid for p in parts], axis=0),
        np.sum([p.lens for p in parts], axis=0, dtype=np.int64),
    )


def _flat(cols: _Cols) -> U8:
    """The valid bytes of all features, feature after feature."""
    return np.compress(cols.valid.T.reshape(-1), cols.data.T.reshape(-1))


def _flat_varints(v: U64, counts: I64) -> tuple[U8, I64]:
    """Varints of a flat token stream and the byte count of each run of ``counts`` tokens."""
    cols = _varint_cols(v)
    csum = np.zeros(v.size + 1, dtype=np.int64)
    np.cumsum(cols.lens, out=csum[1:])
    ends = np.cumsum(counts)
    return _flat(cols), csum[ends] - csum[ends - counts]


def _interleave(a: U8, a_lens: I64, b: U8, b_lens: I64) -> U8:
    """Per feature, its ``a`` bytes then its ``b`` bytes."""
    total = a_lens + b_lens
    start = np.cumsum(total) - total
    out = np.empty(int(total.sum()), dtype=np.uint8)
    for src, lens, offset in ((a, a_lens, start), (b, b_lens, start + a_lens)):
        src_start = np.cumsum(lens) - lens
        out[np.repeat(offset - src_start, lens) + np.arange(src.size)] = src
    return out


# --- properties ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tags:
    """A layer's tag columns per feature plus its encoded ``keys`` and ``values`` fields."""

    cols: list[_Cols]
    keys: bytes
    values: bytes


def _is_string_column(values: object) -> bool:
    """Whether column values are strings (a list, or a str/object ndarray)."""
    return not isinstance(values, np.ndarray) or values.dtype.kind in "OUS"


def _tags(properties: dict[str, Column], n_all: int, kept: I64 | None) -> _Tags:
    """Key/value index pairs per kept feature, and the deduplicated keys and values tables.

    ``kept`` lists the features that are written (``None``: all); lines can lose features.
    """
    n = n_all if kept is None else kept.size
    names: list[str] = []
    index: list[U64] = []  # value-table index per feature, per key
    present: list[Bools] = []
    ints: list[tuple[int, I64]] = []  # (key number, present values)
    bools: list[tuple[int, Bools]] = []
    strs: list[tuple[int, list[str | None]]] = []
    for name, col in properties.items():
        if len(col.values) != n_all:
            raise ValueError(f"column {name!r} has {len(col.values)} values for {n_all} features")
        mask = np.ones(n, dtype=bool)
        if col.present is not None:
            given = np.asarray(col.present, dtype=bool)
            if given.shape != (n_all,):
                raise ValueError(f"column {name!r}: present mask of shape {given.shape}")
            mask = given if kept is None else given[kept]
        if _is_string_column(col.values):
            values = list(col.values) if kept is None else [col.values[i] for i in kept.tolist()]
            if col.present is not None:
                values = [s if p else None for s, p in zip(values, mask.tolist(), strict=True)]
            if None in values:
                mask = np.fromiter((s is not None for s in values), dtype=bool, count=n)
            if mask.any():
                strs.append((len(names), values))
        else:
            arr = np.asarray(col.values)
            arr = arr if kept is None else arr[kept]
            if not mask.any():
                continue
            if arr.dtype.kind == "b":
                bools.append((len(names), arr[mask]))
            elif arr.dtype.kind in "iu":
                if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= 2**63:
                    raise ValueError(f"column {name!r}: integers must fit in int64")
                ints.append((len(names), arr[mask].astype(np.int64)))
            else:
                raise TypeError(f"column {name!r}: unsupported dtype {arr.dtype}")
        if not mask.any():
            continue
        names.append(name)
        index.append(np.zeros(n, dtype=np.uint64))
        present.append(mask)

    values_out: list[bytes] = []
    base = 0
    if ints:
        uniq, inverse = np.unique(np.concatenate([v for _, v in ints]), return_inverse=True)
        start = 0
        for ki, v in ints:
            index[ki][present[ki]] = inverse[start : start + v.size] + base
            start += v.size
        values_out.append(_int_values(uniq))
        base += uniq.size
    if bools:
        used = np.zeros(2, dtype=bool)
        for _, v in bools:
            used[v.astype(np.intp)] = True
        slot = (np.cumsum(used) - 1 + base).astype(np.uint64)
        for ki, v in bools:
            index[ki][present[ki]] = slot[v.astype(np.intp)]
        for flag in np.flatnonzero(used).tolist():
            values_out.append(bytes((_LAYER_VALUES, 2, _VALUE_BOOL, flag)))
        base += int(used.sum())
    if strs:
        table: dict[str, int] = {}
        for ki, values in strs:
            for s in dict.fromkeys(values):
                if s is not None and s not in table:
                    table[s] = len(table)
            found = np.fromiter(map(table.get, values, repeat(0)), dtype=np.int64, count=n)
            index[ki][:] = (found + base).astype(np.uint64)
        values_out.append(_string_values(list(table)))

    cols: list[_Cols] = []
    for ki, (idx, mask) in enumerate(zip(index, present, strict=True)):
        cols.append(_const_cols(_varint(ki), n, mask))
        cols.append(_varint_cols(idx, mask))
    keys = b"".join(_field(_LAYER_KEYS, name.encode()) for name in names)
    return _Tags(cols, keys, b"".join(values_out))


def _string_values(strings: list[str]) -> bytes:
    """Value-table entries (``string_value``) for unique strings."""
    encoded = [s.encode() for s in strings]
    size = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)).astype(np.uint64)
    n = size.size
    value = _join([_const_cols(bytes((_VALUE_STRING,)), n), _varint_cols(size)])
    head = _join(
        [
            _const_cols(bytes((_LAYER_VALUES,)), n),
            _varint_cols(value.lens.astype(np.uint64) + size),
            value,
        ]
    )
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return _interleave(_flat(head), head.lens, blob, size.astype(np.int64)).tobytes()


def _int_values(uniq: I64) -> bytes:
    """Value-table entries for unique integers: ``uint_value`` if ≥ 0 else ``sint_value``."""
    negative = uniq < 0
    payload = np.where(negative, _zigzag(uniq), uniq.view(np.uint64))
    value = _join(
        [_varint_cols(np.where(negative, _VALUE_SINT, _VALUE_UINT).astype(np.uint64)), _varint_cols(payload)]
    )
    n = uniq.size
    return _flat(
        _join([_const_cols(bytes((_LAYER_VALUES,)), n), _varint_cols(value.lens.astype(np.uint64)), value])
    ).tobytes()


# --- layers --------------------------------------------------------------------------------------


def _feature_ids(ids: np.ndarray | None, n_all: int, kept: I64 | None) -> U64 | None:
    """Validate feature ids (one per feature, ``0 ≤ id < 2**53``) and return the kept ones."""
    if ids is None:
        return None
    arr = np.asarray(ids)
    if arr.shape != (n_all,):
        raise ValueError(f"ids of shape {arr.shape} for {n_all} features")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"feature ids must be integers, not {arr.dtype}")
    if n_all and (int(arr.min()) < 0 or int(arr.max()) >= MAX_FEATURE_ID):
        raise ValueError("feature ids must be in 0 .. 2**53 - 1")
    out = arr.astype(np.uint64)
    return out if kept is None else out[kept]


def _as_int64(v: npt.ArrayLike) -> I64:
    """Integer coordinates as int64; float input is rounded to the nearest integer."""
    arr = np.asarray(v)
    if arr.dtype.kind == "f":
        arr = np.rint(arr)
    return arr.astype(np.int64)


def _encode_layer(layer: PointLayer | LineLayer, extent: int) -> bytes:
    """One encoded Layer message, or ``b""`` when it has no features."""
    if isinstance(layer, PointLayer):
        x, y = _as_int64(layer.x).reshape(-1), _as_int64(layer.y).reshape(-1)
        if x.shape != y.shape:
            raise ValueError(f"layer {layer.name!r}: {x.size} x and {y.size} y coordinates")
        n_all, kept = x.size, None
    else:
        n_all = len(layer.lines)
        line_geom = _line_geometry(layer.lines)
        kept = line_geom.kept
    ids = _feature_ids(layer.ids, n_all, kept)
    n = n_all if kept is None else kept.size
    if n == 0:
        return b""
    tags = _tags(layer.properties, n_all, kept)

    head: list[_Cols] = []
    if ids is not None:
        head += [_const_cols(bytes((_FEATURE_ID,)), n), _varint_cols(ids)]
    tag_lens = np.sum([c.lens for c in tags.cols], axis=0, dtype=np.int64) if tags.cols else None
    if tag_lens is not None:
        has_tags = tag_lens > 0
        head += [
            _const_cols(bytes((_FEATURE_TAGS,)), n, has_tags),
            _varint_cols(tag_lens.astype(np.uint64), has_tags),
            *tags.cols,
        ]
    if isinstance(layer, PointLayer):
        geom_type = _POINT
        geom = _join(
            [
                _const_cols(bytes((_MOVE_TO_1,)), n),
                _varint_cols(_zigzag(x)),
                _varint_cols(_zigzag(y)),
            ]
        )
        geom_lens = geom.lens
    else:
        geom_type = _LINESTRING
        geom_bytes, geom_lens = _flat_varints(line_geom.tokens, line_geom.counts)
    head += [
        _const_cols(bytes((_FEATURE_TYPE, geom_type, _FEATURE_GEOMETRY)), n),
        _varint_cols(geom_lens.astype(np.uint64)),
    ]
    body = _join(head)
    feature_lens = body.lens + geom_lens
    framed = [
        _const_cols(bytes((_LAYER_FEATURES,)), n),
        _varint_cols(feature_lens.astype(np.uint64)),
        body,
    ]
    if isinstance(layer, PointLayer):
        features = _flat(_join([*framed, geom]))
    else:
        prefix = _join(framed)
        features = _interleave(_flat(prefix), prefix.lens, geom_bytes, geom_lens)
    return b"".join(
        [
            _field(_LAYER_NAME, layer.name.encode()),
            features.tobytes(),
            tags.keys,
            tags.values,
            bytes((_LAYER_EXTENT,)) + _varint(extent),
            bytes((_LAYER_VERSION, LAYER_VERSION)),
        ]
    )


@dataclass(frozen=True, slots=True)
class _LineGeometry:
    """Geometry integers of the kept line features, in feature order."""

    tokens: U64
    counts: I64  # integers per kept feature
    kept: I64  # indices of the kept features


def _line_geometry(lines: list[list[np.ndarray]]) -> _LineGeometry:
    """MoveTo/LineTo command streams with zigzag deltas for every feature that keeps a part.

    Consecutive duplicate vertices are dropped, then parts with fewer than two vertices, then
    features without parts. The cursor carries over between the parts of one feature (MVT 2.1
    §4.3.2), so a later part's MoveTo is relative to the previous part's last vertex.
    """
    empty = _LineGeometry(np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64))
    arrays = [np.asarray(part) for feature in lines for part in feature]
    if not arrays:
        return empty
    part_feature = np.repeat(np.arange(len(lines)), [len(feature) for feature in lines])
    sizes = np.array([a.shape[0] if a.ndim else 0 for a in arrays], dtype=np.int64)
    for a in arrays:
        if a.size and (a.ndim != 2 or a.shape[1] != 2):
            raise ValueError(f"line parts must be (n, 2) arrays, not {a.shape}")
    verts = _as_int64(np.concatenate([a.reshape(-1, 2) for a in arrays]))
    part_of = np.repeat(np.arange(len(arrays)), sizes)
    fresh = np.ones(len(verts), dtype=bool)
    fresh[1:] = (part_of[1:] != part_of[:-1]) | np.any(verts[1:] != verts[:-1], axis=1)
    part_size = np.bincount(part_of[fresh], minlength=len(arrays))
    fresh &= (part_size >= 2)[part_of]
    verts, part_of = verts[fresh], part_of[fresh]
    if verts.size == 0:
        return empty
    feature_of = part_feature[part_of]
    m = len(verts)
    new_feature = np.ones(m, dtype=bool)
    new_feature[1:] = feature_of[1:] != feature_of[:-1]
    new_part = np.ones(m, dtype=bool)
    new_part[1:] = part_of[1:] != part_of[:-1]
    second = np.zeros(m, dtype=bool)
    second[1:] = new_part[:-1]
    # Deltas from the previous vertex of the same feature; a feature starts at (0, 0).
    delta = verts.copy()
    delta[1:] -= verts[:-1]
    delta[new_feature] = verts[new_feature]
    zz = _zigzag(delta)
    # Each vertex gives its (dx, dy); a part's first vertex is preceded by MoveTo(1), its second
    # by LineTo(vertices - 1).
    has_cmd = (new_part | second).astype(np.int64)
    per_vertex = 2 + has_cmd
    ends = np.cumsum(per_vertex)
    at = ends - per_vertex
    tokens = np.empty(int(ends[-1]), dtype=np.uint64)
    tokens[at[new_part]] = _MOVE_TO_1
    line_to = _LINE_TO | ((part_size[part_of[second]] - 1) << 3)
    tokens[at[second]] = line_to.astype(np.uint64)
    tokens[at + has_cmd] = zz[:, 0]
    tokens[at + has_cmd + 1] = zz[:, 1]
    kept, first_vertex = np.unique(feature_of, return_index=True)
    counts = np.diff(np.append(at[first_vertex], tokens.size))
    return _LineGeometry(tokens, counts.astype(np.int64), kept.astype(np.int64))
