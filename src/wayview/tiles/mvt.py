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
stacked and the mask compresses them into the features' bytes in one step; lengths of nested
messages are sums of the parts' byte counts, so nothing is encoded twice. Line features have a
variable number of vertices, so every vertex is a column of its own (command, dx, dy) and the
vertex bytes are interleaved with the features' fixed part by index arithmetic (`_interleave`).
Integer value-table entries and string headers are built the same way; Python loops run only over
columns, unique strings and line parts. Numbers are kept in 32 bits where the format allows it
(geometry, indices, lengths), which halves the memory traffic of large tiles.

Encoding choices (COMPATIBILITY.md §4): layer version 2; integer properties use ``uint_value``
when ≥ 0 and ``sint_value`` (zigzag) when negative; booleans ``bool_value``; strings
``string_value``; keys and values deduplicated per layer; feature ids in ``0 .. 2**53 - 1``
(exact in JavaScript). Field order inside a layer is name, features, keys, values, extent, version
(protobuf readers accept any order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "LAYER_VERSION",
    "MAX_COORD",
    "MAX_FEATURE_ID",
    "Column",
    "LineLayer",
    "PointLayer",
    "encode_tile",
]

U8: TypeAlias = npt.NDArray[np.uint8]
U32: TypeAlias = npt.NDArray[np.uint32]
U64: TypeAlias = npt.NDArray[np.uint64]
UInt: TypeAlias = npt.NDArray[np.uint32] | npt.NDArray[np.uint64]
I32: TypeAlias = npt.NDArray[np.int32]
I64: TypeAlias = npt.NDArray[np.int64]
Bools: TypeAlias = npt.NDArray[np.bool_]

MAX_FEATURE_ID = 2**53  # exclusive; ids must survive JavaScript numbers (COMPATIBILITY.md §4.3)
MAX_COORD = 2**30  # exclusive bound on |tile coordinate|, so that deltas fit in sint32
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
    #: With categories, ``values`` are integer codes into them: a string column without one
    #: Python string per feature (e.g. the sequence key of every image of a tile).
    categories: tuple[str, ...] | None = None


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
            id is outside ``0 .. 2**53 - 1``, an integer property does not fit in int64, a
            coordinate is outside ``±MAX_COORD``, or two layers share a name.
        TypeError: a column holds neither integers, booleans nor strings, or ids or coordinates
            are not numbers.

    One point with feature id 7 at (25, 17), no properties:

    >>> import numpy as np
    >>> layer = PointLayer("p", x=np.array([25]), y=np.array([17]), ids=np.array([7]))
    >>> encode_tile([layer]).hex(" ")
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


def _varint_len(v: UInt) -> U8:
    """Byte length of the varint of each value (1..10)."""
    n = np.ones(v.shape, dtype=np.uint8)
    top = int(v.max()) if v.size else 0
    k = 1
    while k < 10 and top >= 1 << (7 * k):
        n += v >= v.dtype.type(1 << (7 * k))
        k += 1
    return n


def _zigzag32(v: I32, out: U32 | None = None) -> U32:
    """Zigzag-encode int32 values as uint32 (MVT geometry parameters): 0, -1, 1, -2 → 0, 1, 2, 3.

    The shift wraps like the C expression ``(n << 1) ^ (n >> 31)``, so every int32 is exact.
    """
    res = np.empty(v.shape, dtype=np.uint32) if out is None else out
    signed = res.view(np.int32)
    np.left_shift(v, 1, out=signed)
    signed ^= v >> 31
    return res


def _zigzag64(v: I64) -> U64:
    """Zigzag-encode int64 values as uint64 (``sint_value``)."""
    res = np.left_shift(v, 1)
    res ^= v >> 63
    return res.view(np.uint64)


@dataclass(frozen=True, slots=True)
class _Cols:
    """Per-feature bytes, feature ``f`` in column ``f``: ``data`` (width, n) and a ``valid`` mask.

    A feature's bytes are its valid entries of column ``f`` from top to bottom; ``lens[f]`` counts
    them. Features run along the last axis so that numpy loops over features (many) rather than
    over the bytes of one varint (a few).
    """

    data: U8
    valid: Bools
    lens: I64


def _varint_cols(v: UInt, present: Bools | None = None) -> _Cols:
    """Varints of ``v`` (shape ``(n,)`` or ``(rows, n)``), each row padded to the longest varint.

    Feature ``f`` gets the varints of ``v[0, f]``, ``v[1, f]``, … in order; entries where
    ``present`` is false are left out.
    """
    v2 = v if v.ndim == 2 else v[None, :]
    rows, n = v2.shape
    lens = _varint_len(v2)
    if present is not None:
        lens *= present.reshape(rows, n)
    width = int(lens.max()) if lens.size else 0
    if width <= 1:
        return _Cols(v2.astype(np.uint8), lens > 0, lens.sum(axis=0, dtype=np.int64))
    data = np.empty((rows, width, n), dtype=np.uint8)
    valid = np.empty((rows, width, n), dtype=bool)
    for k in range(width):
        np.greater(lens, k, out=valid[:, k, :])
    for k in range(width):
        byte = data[:, k, :]
        np.copyto(byte, v2 >> v2.dtype.type(7 * k), casting="unsafe")  # keeps the low 8 bits
        byte &= np.uint8(0x7F)
        if k + 1 < width:  # continuation bit: the varint has a byte k + 1
            byte |= valid[:, k + 1, :].view(np.uint8) << np.uint8(7)
    total = lens.sum(axis=0, dtype=np.int64)
    return _Cols(data.reshape(rows * width, n), valid.reshape(rows * width, n), total)


def _const_cols(raw: bytes, n: int, present: Bools | None = None) -> _Cols:
    """The same bytes for every feature (or only for those where ``present``)."""
    data = np.broadcast_to(np.frombuffer(raw, dtype=np.uint8)[:, None], (len(raw), n))
    if present is None:
        return _Cols(data, np.ones((len(raw), n), dtype=bool), np.full(n, len(raw), np.int64))
    valid = np.broadcast_to(present[None, :], (len(raw), n))
    return _Cols(data, valid, present * len(raw))


def _join(parts: Sequence[_Cols]) -> _Cols:
    """Parts one after the other: feature ``f`` gets every part's bytes for ``f`` in order."""
    lens = parts[0].lens.copy()
    for p in parts[1:]:
        lens += p.lens
    return _Cols(
        np.concatenate([p.data for p in parts], axis=0),
        np.concatenate([p.valid for p in parts], axis=0),
        lens,
    )


def _flat(cols: _Cols) -> U8:
    """The valid bytes of all features, feature after feature."""
    return np.compress(cols.valid.T.reshape(-1), cols.data.T.reshape(-1))


def _interleave(a: U8, a_lens: I64, b: U8, b_lens: I64) -> U8:
    """Per feature, its ``a`` bytes then its ``b`` bytes (``*_lens``: bytes per feature)."""
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
    """Tag bytes per feature (``None`` without properties) and the encoded keys and values."""

    cols: _Cols | None
    keys: bytes
    values: bytes


def _is_string_column(values: object) -> bool:
    """Whether column values are strings (a list, or a str/object ndarray)."""
    return not isinstance(values, np.ndarray) or values.dtype.kind in "OUS"


def _tags(properties: dict[str, Column], n_all: int, kept: I64 | None) -> _Tags:
    """Key/value index pairs per kept feature, and the deduplicated keys and values tables.

    ``kept`` lists the features that are written (``None``: all); lines can lose features.
    Integer values are deduplicated across all integer columns, strings across string columns.
    """
    n = n_all if kept is None else kept.size
    names: list[str] = []
    present: list[Bools | None] = []  # per key: which kept features have a value (None: all)
    ints: list[tuple[int, I64]] = []  # (key number, present values)
    bools: list[tuple[int, Bools]] = []
    strs: list[tuple[int, list[str | None]]] = []
    cats: list[tuple[int, I64, tuple[str, ...]]] = []
    for name, col in properties.items():
        if len(col.values) != n_all:
            raise ValueError(f"column {name!r} has {len(col.values)} values for {n_all} features")
        if col.categories is not None:
            if col.present is not None:
                raise ValueError(f"column {name!r}: categories take no present mask")
            codes = np.asarray(col.values, dtype=np.int64)
            codes = codes if kept is None else codes[kept]
            if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= len(col.categories)):
                raise ValueError(f"column {name!r}: category code out of range")
            cats.append((len(names), codes, col.categories))
            names.append(name)
            present.append(None)
            continue
        mask: Bools | None = None
        if col.present is not None:
            given = np.asarray(col.present, dtype=bool)
            if given.shape != (n_all,):
                raise ValueError(f"column {name!r}: present mask of shape {given.shape}")
            mask = given if kept is None else given[kept]
        if _is_string_column(col.values):
            values = list(col.values) if kept is None else [col.values[i] for i in kept.tolist()]
            if mask is not None:
                values = [s if p else None for s, p in zip(values, mask.tolist(), strict=True)]
            mask = None
            if None in values:
                mask = np.fromiter((s is not None for s in values), dtype=bool, count=n)
            if mask is not None and not mask.any():
                continue
            strs.append((len(names), values))
        else:
            if mask is not None and not mask.any():
                continue
            arr = np.asarray(col.values)
            arr = arr if kept is None else arr[kept]
            arr = arr if mask is None else arr[mask]
            if arr.dtype.kind == "b":
                bools.append((len(names), arr))
            elif arr.dtype.kind in "iu":
                if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= 2**63:
                    raise ValueError(f"column {name!r}: integers must fit in int64")
                ints.append((len(names), arr.astype(np.int64, copy=False)))
            else:
                raise TypeError(f"column {name!r}: unsupported dtype {arr.dtype}")
        names.append(name)
        present.append(mask)
    if not names:
        return _Tags(None, b"", b"")

    k = len(names)
    index = np.zeros((k, n), dtype=np.uint32)  # value-table index per key and feature
    values_out: list[bytes] = []
    base = 0
    if ints:
        uniq, inverse = np.unique(np.concatenate([v for _, v in ints]), return_inverse=True)
        slots = inverse.astype(np.uint32) + np.uint32(base)
        start = 0
        for ki, v in ints:
            _put(index[ki], present[ki], slots[start : start + v.size])
            start += v.size
        values_out.append(_int_values(uniq))
        base += uniq.size
    if bools:
        used = np.zeros(2, dtype=bool)
        for _, flags in bools:
            used[flags.astype(np.intp)] = True
        slot = (np.cumsum(used) - 1 + base).astype(np.uint32)
        for ki, flags in bools:
            _put(index[ki], present[ki], slot[flags.astype(np.intp)])
        for flag in np.flatnonzero(used).tolist():
            values_out.append(bytes((_LAYER_VALUES, 2, _VALUE_BOOL, flag)))
        base += int(used.sum())
    if strs or cats:
        table: dict[str | None, int] = {}
        for ki, codes, categories in cats:
            used = np.unique(codes)
            lut = np.zeros(len(categories), dtype=np.uint32)
            for c in used.tolist():
                lut[c] = table.setdefault(categories[c], len(table))
            index[ki] = lut[codes] + np.uint32(base)
        for ki, values in strs:
            for s in dict.fromkeys(values):
                if s is not None and s not in table:
                    table[s] = len(table)
            lookup = {**table, None: 0}  # None: absent, masked out
            found = np.fromiter(map(lookup.__getitem__, values), dtype=np.uint32, count=n)
            index[ki] = found + np.uint32(base)
        values_out.append(_string_values([s for s in table if s is not None]))

    # Per key: its index (one byte for up to 127 keys, else a varint) then its value's index.
    everywhere = all(m is None for m in present)
    mask = None if everywhere else np.ones((k, n), dtype=bool)
    if mask is not None:
        for ki, m in enumerate(present):
            if m is not None:
                mask[ki] = m
    value_cols = _varint_cols(index, mask)
    key_cols = _varint_cols(np.repeat(np.arange(k, dtype=np.uint32)[:, None], n, axis=1), mask)
    kw, vw = key_cols.data.shape[0] // k, value_cols.data.shape[0] // k
    data = np.concatenate(
        [key_cols.data.reshape(k, kw, n), value_cols.data.reshape(k, vw, n)], axis=1
    )
    valid = np.concatenate(
        [key_cols.valid.reshape(k, kw, n), value_cols.valid.reshape(k, vw, n)], axis=1
    )
    cols = _Cols(data.reshape(-1, n), valid.reshape(-1, n), key_cols.lens + value_cols.lens)
    keys = b"".join(_field(_LAYER_KEYS, name.encode()) for name in names)
    return _Tags(cols, keys, b"".join(values_out))


def _put(row: U32, mask: Bools | None, values: U32) -> None:
    """Write ``values`` into ``row`` where ``mask`` is set (everywhere when it is None)."""
    if mask is None:
        row[:] = values
    else:
        row[mask] = values


def _string_values(strings: list[str]) -> bytes:
    """Value-table entries (``string_value``) for unique strings."""
    try:
        encoded = [s.encode() for s in strings]
    except AttributeError as exc:
        raise TypeError("string columns may hold only str and None") from exc
    size = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    head = np.empty((4, size.size), dtype=np.uint64)  # Layer.values key, length, Value key, size
    head[0] = _LAYER_VALUES
    head[1] = 1 + _varint_len(size.astype(np.uint64)) + size
    head[2] = _VALUE_STRING
    head[3] = size
    cols = _varint_cols(head)
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return _interleave(_flat(cols), cols.lens, blob, size).tobytes()


def _int_values(uniq: I64) -> bytes:
    """Value-table entries for unique integers: ``uint_value`` if ≥ 0 else ``sint_value``."""
    negative = uniq < 0
    payload = np.where(negative, _zigzag64(uniq), uniq.view(np.uint64))
    body = _varint_cols(payload)
    head = np.empty((3, uniq.size), dtype=np.uint64)  # Layer.values key, length, Value key
    head[0] = _LAYER_VALUES
    head[1] = body.lens + 1
    head[2] = np.where(negative, _VALUE_SINT, _VALUE_UINT)
    return _flat(_join([_varint_cols(head), body])).tobytes()


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


def _coords(v: npt.ArrayLike) -> I32:
    """Integer tile coordinates as int32 (floats are rounded), checked to be within ±2**30.

    Geometry parameters are zigzag-encoded *32-bit* deltas (MVT 2.1 §4.3.2); this range keeps
    every delta between two coordinates inside it.
    """
    arr = np.asarray(v)
    if arr.dtype.kind == "f":
        arr = np.rint(arr)
    elif arr.dtype.kind not in "iub" and arr.size:
        raise TypeError(f"coordinates must be numbers, not {arr.dtype}")
    if arr.size and (arr.min() <= -MAX_COORD or arr.max() >= MAX_COORD):
        raise ValueError("tile coordinates must be within ±2**30")
    return arr.astype(np.int32, copy=False)


def _encode_layer(layer: PointLayer | LineLayer, extent: int) -> bytes:
    """One encoded Layer message, or ``b""`` when it has no features."""
    if isinstance(layer, PointLayer):
        x, y = _coords(layer.x).reshape(-1), _coords(layer.y).reshape(-1)
        if x.shape != y.shape:
            raise ValueError(f"layer {layer.name!r}: {x.size} x and {y.size} y coordinates")
        n_all, kept = x.size, None
    else:
        n_all = len(layer.lines)
        line_geom = _line_geometry(layer.lines)
        kept = line_geom.kept if line_geom.kept.size < n_all else None  # None: all kept
    ids = _feature_ids(layer.ids, n_all, kept)
    n = n_all if kept is None else kept.size
    if n == 0:
        return b""
    tags = _tags(layer.properties, n_all, kept)

    body: list[_Cols] = []
    if ids is not None:
        body += [_const_cols(bytes((_FEATURE_ID,)), n), _varint_cols(ids)]
    if tags.cols is not None:
        has_tags = tags.cols.lens > 0
        body += [
            _const_cols(bytes((_FEATURE_TAGS,)), n, has_tags),
            _varint_cols(tags.cols.lens.astype(np.uint32), has_tags),
            tags.cols,
        ]
    if isinstance(layer, PointLayer):
        geom_type = _POINT
        point = np.empty((3, n), dtype=np.uint32)
        point[0] = _MOVE_TO_1
        _zigzag32(x, out=point[1])
        _zigzag32(y, out=point[2])
        geom = _varint_cols(point)
        geom_lens = geom.lens
    else:
        geom_type = _LINESTRING
        geom_bytes, geom_lens = _flat(line_geom.vertices), line_geom.lens
    body += [
        _const_cols(bytes((_FEATURE_TYPE, geom_type, _FEATURE_GEOMETRY)), n),
        _varint_cols(geom_lens.astype(np.uint32)),
    ]
    # Layer.features key and the Feature message length, then the Feature fields.
    feature_lens = geom_lens.copy()
    for part in body:
        feature_lens += part.lens
    framed = [
        _const_cols(bytes((_LAYER_FEATURES,)), n),
        _varint_cols(feature_lens.astype(np.uint32)),
        *body,
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
    """Encoded geometry of the kept line features: one ``_Cols`` column per vertex."""

    vertices: _Cols  # per vertex: its command integer (first two vertices of a part), dx, dy
    lens: I64  # geometry bytes per kept feature
    kept: I64  # indices of the kept features


def _line_geometry(lines: list[list[np.ndarray]]) -> _LineGeometry:
    """MoveTo/LineTo command streams with zigzag deltas for every feature that keeps a part.

    Consecutive duplicate vertices are dropped, then parts with fewer than two vertices, then
    features without parts. The cursor carries over between the parts of one feature (MVT 2.1
    §4.3), so a later part's MoveTo is relative to the previous part's last vertex.
    """
    empty = np.empty(0, dtype=np.int64)
    arrays = [np.asarray(part) for feature in lines for part in feature]
    try:
        verts = _coords(np.concatenate(arrays)) if arrays else np.empty((0, 2), np.int32)
    except ValueError as exc:
        raise ValueError("line parts must be (n, 2) arrays") from exc
    if verts.ndim != 2 or verts.shape[1] != 2:
        raise ValueError(f"line parts must be (n, 2) arrays, not {verts.shape[1:]}")
    sizes = np.array([len(a) for a in arrays], dtype=np.int64)
    part_feature = np.repeat(np.arange(len(lines)), [len(feature) for feature in lines])
    xy = np.ascontiguousarray(verts.T)  # (2, vertices): numpy works along rows from here on
    starts = np.cumsum(sizes) - sizes
    repeat = (xy[0, 1:] == xy[0, :-1]) & (xy[1, 1:] == xy[1, :-1])
    inner = starts[(starts > 0) & (starts < xy.shape[1])]
    repeat[inner - 1] = False  # the first vertex of a part repeats nothing
    if repeat.any() or (sizes < 2).any():
        part_of = np.repeat(np.arange(sizes.size), sizes)
        fresh = np.ones(xy.shape[1], dtype=bool)
        fresh[1:] = ~repeat
        sizes = np.bincount(part_of[fresh], minlength=sizes.size)
        fresh &= (sizes >= 2)[part_of]
        xy = np.compress(fresh, xy, axis=1)
        part_feature = part_feature[sizes >= 2]
        sizes = sizes[sizes >= 2]
        starts = np.cumsum(sizes) - sizes
    m = xy.shape[1]
    if m == 0:
        return _LineGeometry(_varint_cols(np.empty((3, 0), np.uint32)), empty, empty)
    first_part = np.flatnonzero(np.diff(part_feature, prepend=-1))  # first part of each feature
    feature_start = starts[first_part]
    # Per vertex: [command], dx, dy. Deltas are from the previous vertex of the same feature (a
    # feature starts at (0, 0)); a part's first vertex carries MoveTo(1), its second
    # LineTo(vertices - 1).
    delta = np.empty_like(xy)
    np.subtract(xy[:, 1:], xy[:, :-1], out=delta[:, 1:])
    delta[:, feature_start] = xy[:, feature_start]
    tokens = np.empty((3, m), dtype=np.uint32)
    tokens[0, starts] = _MOVE_TO_1
    tokens[0, starts + 1] = _LINE_TO | ((sizes - 1) << 3)
    _zigzag32(delta, out=tokens[1:])
    present = np.ones((3, m), dtype=bool)
    present[0] = False
    present[0, starts] = True
    present[0, starts + 1] = True
    vertices = _varint_cols(tokens, present)
    csum = np.cumsum(vertices.lens)
    lens = np.diff(csum[np.append(feature_start[1:], m) - 1], prepend=0)
    return _LineGeometry(vertices, lens, part_feature[first_part].astype(np.int64))
