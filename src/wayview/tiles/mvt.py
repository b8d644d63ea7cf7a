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
varint of that part, with a mask of the bytes actually used (`varint_cols`). The parts are
stacked and the mask compresses them into the features' bytes in one step; lengths of nested
messages are sums of the parts' byte counts, so nothing is encoded twice. Line features have a
variable number of vertices, so every vertex is a column of its own (command, dx, dy) and the
vertex bytes are interleaved with the features' fixed part by index arithmetic (`interleave`).
Integer value-table entries and string headers are built the same way; Python loops run only over
columns, unique strings and line parts (lines may also come as flat arrays, `LineParts`, so not
even those). Numbers are kept in 32 bits where the format allows it (geometry, indices, lengths),
which halves the memory traffic of large tiles.

Value tables are built per column (`_int_table`: a lookup table for small ranges, else one index
sort) instead of one `np.unique` over every integer of the layer. Columns are merged smallest
first, searching only those whose value ranges overlap (`_place_ints`), so a value shared by two
columns is still stored once; small tables first also gives the values most features point at
one-byte indices.

Small point layers (up to `_SMALL_POINTS` features, e.g. overview tiles) skip all that: numpy's
per-call costs would dominate them, so `_small_points` writes the same bytes in plain Python, after
the same checks (`_coords`, `_feature_ids`, `_columns`). Small line layers (up to `_SMALL_LINES`
features, the sequences of a z14 tile) keep the vectorised geometry but build their tags and
framing the same way (`_small_lines`).

Encoding choices (COMPATIBILITY.md §4): layer version 2; integer properties use ``uint_value``
when ≥ 0 and ``sint_value`` (zigzag) when negative; booleans ``bool_value``; strings
``string_value``; keys and values deduplicated per layer; feature ids in ``0 .. 2**53 - 1``
(exact in JavaScript). Field order inside a layer is name, features, keys, values, extent, version
(protobuf readers accept any order).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from wayview.tiles.varints import (
    I32,
    I64,
    U32,
    U64,
    Bools,
    Cols,
    Const,
    flat,
    interleave,
    join,
    length_delimited,
    varint,
    varint_cols,
    varint_len,
    zigzag32,
    zigzag64,
)

__all__ = [
    "LAYER_VERSION",
    "MAX_COORD",
    "MAX_FEATURE_ID",
    "Column",
    "LineLayer",
    "LineParts",
    "PointLayer",
    "encode_tile",
]

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
class LineParts:
    """Line features in three flat arrays, without one array per part.

    ``vertices`` is ``(m, 2)``: the parts one after the other, ``part_sizes[p]`` vertices each;
    feature ``f`` owns the next ``feature_parts[f]`` parts. Same meaning as a list of lists of
    parts (`LineLayer`), for callers that have all vertices in one buffer already.
    """

    vertices: np.ndarray
    part_sizes: np.ndarray
    feature_parts: np.ndarray

    def __len__(self) -> int:
        """Number of features."""
        return len(self.feature_parts)


@dataclass(frozen=True, slots=True)
class LineLayer:
    """A layer of line features; each feature is a list of ``(n, 2)`` integer parts.

    A feature with several parts is a MultiLineString. ``lines`` may also be a `LineParts`.
    """

    name: str
    lines: list[list[np.ndarray]] | LineParts
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
            out.append(length_delimited(_TILE_LAYERS, body))
    return b"".join(out)


# --- properties ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tags:
    """Tag bytes per feature (``None`` without properties) and the encoded keys and values."""

    cols: Cols | None
    keys: bytes
    values: bytes


def _is_string_column(values: object) -> bool:
    """Whether column values are strings (a list, or a str/object ndarray)."""
    return not isinstance(values, np.ndarray) or values.dtype.kind in "OUS"


@dataclass(frozen=True, slots=True)
class _Columns:
    """A layer's property columns, checked and sorted by kind (`_columns`), for the kept features.

    Only columns with at least one value get a key; ``ki`` below is that key's number.
    """

    names: list[str]  # the keys, in column order
    present: list[Bools | None]  # per key: which kept features have a value (None: all)
    ints: list[tuple[int, I64]]  # (ki, the present values)
    bools: list[tuple[int, Bools]]  # (ki, the present values)
    strs: list[tuple[int, list[str | None]]]  # (ki, one value per kept feature, None: absent)
    cats: list[tuple[int, I64, tuple[str, ...]]]  # (ki, codes per kept feature, categories)


def _columns(properties: dict[str, Column], n_all: int, kept: I64 | None) -> _Columns:
    """Check the property columns and sort them by kind; shared by both encoding paths.

    ``kept`` lists the features that are written (``None``: all); lines can lose features.
    """
    n = n_all if kept is None else kept.size
    names: list[str] = []
    present: list[Bools | None] = []
    ints: list[tuple[int, I64]] = []
    bools: list[tuple[int, Bools]] = []
    strs: list[tuple[int, list[str | None]]] = []
    cats: list[tuple[int, I64, tuple[str, ...]]] = []
    for name, col in properties.items():
        if len(col.values) != n_all:
            raise ValueError(f"column {name!r} has {len(col.values)} values for {n_all} features")
        if col.categories is not None:
            if col.present is not None:
                raise ValueError(f"column {name!r}: categories take no present mask")
            if not all(isinstance(c, str) for c in col.categories):
                raise TypeError(f"column {name!r}: categories must be strings")
            codes = np.asarray(col.values, dtype=np.int64)
            if codes.ndim != 1:
                raise ValueError(f"column {name!r}: values of shape {codes.shape}")
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
            if mask.all():
                mask = None
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
            if arr.ndim != 1:
                raise ValueError(f"column {name!r}: values of shape {arr.shape}")
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
    return _Columns(names, present, ints, bools, strs, cats)


def _tags(properties: dict[str, Column], n_all: int, kept: I64 | None) -> _Tags:
    """Key/value index pairs per kept feature, and the deduplicated keys and values tables.

    ``kept`` lists the features that are written (``None``: all); lines can lose features.
    Every value is stored once per layer: integers across all integer columns, strings across
    string columns. Each column gets its own value table (`_int_table`), and the tables are laid
    out smallest first, so that the values most features point at (booleans, categories, small
    integer sets) get one-byte indices; columns of distinct values (ids, timestamps) come last.
    """
    n = n_all if kept is None else kept.size
    columns = _columns(properties, n_all, kept)
    names, present = columns.names, columns.present
    ints, bools, strs, cats = columns.ints, columns.bools, columns.strs, columns.cats
    if not names:
        return _Tags(None, b"", b"")

    k = len(names)
    index = np.empty((k, n), dtype=np.uint32)  # value-table index per key and feature
    values_out: list[bytes] = []
    base = 0
    if bools:
        has_false = any(not flags.all() for _, flags in bools)
        has_true = any(flags.any() for _, flags in bools)
        slot_false, slot_true = base, base + int(has_false)
        for ki, flags in bools:
            row = flags.astype(np.uint32)
            if slot_true != slot_false:
                row += np.uint32(slot_false)
            else:
                row[:] = slot_false
            _put(index[ki], present[ki], row)
        for flag, wanted in ((0, has_false), (1, has_true)):
            if wanted:
                values_out.append(bytes((_LAYER_VALUES, 2, _VALUE_BOOL, flag)))
        base += int(has_false) + int(has_true)
    if strs or cats:
        table: dict[str | None, int] = {}
        for ki, codes, categories in cats:
            used = np.zeros(len(categories), dtype=bool)
            used[codes] = True
            lut = np.zeros(len(categories), dtype=np.uint32)
            for c in np.flatnonzero(used).tolist():
                lut[c] = table.setdefault(categories[c], len(table))
            lut += np.uint32(base)
            index[ki] = lut[codes]
        for ki, values in strs:
            for s in dict.fromkeys(values):
                if s is not None and s not in table:
                    table[s] = len(table)
            lookup = {**table, None: 0}  # None: absent, masked out
            found = np.fromiter(map(lookup.__getitem__, values), dtype=np.uint32, count=n)
            found += np.uint32(base)
            index[ki] = found
        values_out.append(_string_values([s for s in table if s is not None]))
        base += len(table)
    if ints:
        local = [(ki, *_int_table(v)) for ki, v in ints]
        local.sort(key=lambda t: t[1].size)  # small tables first: shorter indices
        emitted: list[_IntBlock] = []
        for ki, uniq, inverse in local:
            slots, block = _place_ints(uniq, emitted, base)
            if block is not None:
                emitted.append(block)
                base += block.values.size
            _put(index[ki], present[ki], slots[inverse])
        values_out.append(_int_values(np.concatenate([b.values for b in emitted])))

    # Per key: its index (one byte for up to 127 keys) then its value's index.
    everywhere = all(m is None for m in present)
    mask = None if everywhere else np.ones((k, n), dtype=bool)
    if mask is not None:
        for ki, m in enumerate(present):
            if m is not None:
                mask[ki] = m
    value_cols = varint_cols(index, mask)
    vw = value_cols.data.shape[0] // k
    if k < 0x80:
        data = np.empty((k, 1 + vw, n), dtype=np.uint8)
        data[:, 0, :] = np.arange(k, dtype=np.uint8)[:, None]
        data[:, 1:, :] = value_cols.data.reshape(k, vw, n)
        valid = np.empty((k, 1 + vw, n), dtype=bool)
        if mask is None:
            valid[:, 0, :] = True
        else:
            valid[:, 0, :] = mask
        valid[:, 1:, :] = value_cols.valid.reshape(k, vw, n)
        key_lens = np.full(n, k, dtype=np.int64) if mask is None else mask.sum(axis=0)
    else:
        key_cols = varint_cols(np.repeat(np.arange(k, dtype=np.uint32)[:, None], n, axis=1), mask)
        kw = key_cols.data.shape[0] // k
        data = np.concatenate(
            [key_cols.data.reshape(k, kw, n), value_cols.data.reshape(k, vw, n)], axis=1
        )
        valid = np.concatenate(
            [key_cols.valid.reshape(k, kw, n), value_cols.valid.reshape(k, vw, n)], axis=1
        )
        key_lens = key_cols.lens
    cols = Cols(data.reshape(-1, n), valid.reshape(-1, n), key_lens + value_cols.lens)
    keys = b"".join(length_delimited(_LAYER_KEYS, name.encode()) for name in names)
    return _Tags(cols, keys, b"".join(values_out))


def _put(row: U32, mask: Bools | None, values: U32) -> None:
    """Write ``values`` into ``row`` where ``mask`` is set (everywhere when it is None)."""
    if mask is None:
        row[:] = values
    else:
        row[mask] = values


#: An integer column spanning at most this many values more than it has is deduplicated with a
#: lookup table over its range (compass angles, small enums) instead of a sort.
_LUT_SLACK = 1024


def _int_table(v: I64) -> tuple[I64, npt.NDArray[np.intp]]:
    """One integer column's distinct values, sorted, and each value's position among them.

    A small range takes a lookup table (no sort); anything else one index sort. Sorted tables
    also gzip better: neighbouring ids and timestamps share their high bytes (about 4 % smaller
    gzipped z14 tiles than with the column order).
    """
    if v.size == 0:
        return v, np.empty(0, dtype=np.intp)
    lo, hi = int(v.min()), int(v.max())
    if lo == hi:  # one value (an organization, a creator): nothing to sort
        return v[:1].copy(), np.zeros(v.size, dtype=np.intp)
    if hi - lo <= v.size + _LUT_SLACK:
        offset = v - np.int64(lo)
        seen = np.zeros(hi - lo + 1, dtype=bool)
        seen[offset] = True
        rank = np.cumsum(seen, dtype=np.intp)
        rank -= 1
        return np.flatnonzero(seen).astype(np.int64) + np.int64(lo), rank[offset]
    order = np.argsort(v)
    ordered = v[order]
    first = np.empty(v.size, dtype=bool)  # first of a run of equal values
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    position = np.empty(v.size, dtype=np.intp)
    if first.all():  # distinct: ids, timestamps
        position[order] = np.arange(v.size, dtype=np.intp)
        return ordered, position
    ranks = np.cumsum(first, dtype=np.intp)
    ranks -= 1
    position[order] = ranks
    return ordered[first], position


@dataclass(slots=True)
class _IntBlock:
    """Integers already in the values table: ``values[j]`` is at slot ``base + j``."""

    values: I64
    base: int
    lo: int
    hi: int


def _place_ints(uniq: I64, emitted: list[_IntBlock], base: int) -> tuple[U32, _IntBlock | None]:
    """Slots of a column's distinct integers: reuse those of earlier columns, append the rest.

    ``uniq`` is sorted. Columns are placed smallest first, so each earlier block is searched for
    in this column's values (few searches into many values), and only when the value ranges
    overlap (timestamps, angles and ids mostly do not).
    """
    lo, hi = int(uniq[0]), int(uniq[-1])
    slots = np.empty(uniq.size, dtype=np.uint32)
    fresh: Bools | None = None  # values not found in an earlier block
    for block in emitted:
        if block.hi < lo or block.lo > hi:
            continue
        pos = np.searchsorted(uniq, block.values)
        pos[pos == uniq.size] = 0
        found = uniq[pos] == block.values
        if not found.any():
            continue
        hit = pos[found]
        if fresh is None:
            fresh = np.ones(uniq.size, dtype=bool)
        fresh[hit] = False
        slots[hit] = np.flatnonzero(found) + block.base
    if fresh is None:
        slots[:] = np.arange(base, base + uniq.size, dtype=np.uint32)
        return slots, _IntBlock(uniq, base, lo, hi)
    new = np.flatnonzero(fresh)
    slots[new] = np.arange(base, base + new.size, dtype=np.uint32)
    if new.size == 0:
        return slots, None
    values = uniq[new]
    return slots, _IntBlock(values, base, int(values[0]), int(values[-1]))


#: Up to this many distinct strings, their value-table entries are built in plain Python.
_FEW_STRINGS = 64


def _string_values(strings: list[str]) -> bytes:
    """Value-table entries (``string_value``) for unique strings."""
    try:
        encoded = [s.encode() for s in strings]
    except AttributeError as exc:
        raise TypeError("string columns may hold only str and None") from exc
    if len(encoded) <= _FEW_STRINGS:  # plain bytes beat a dozen numpy calls here
        out = bytearray()
        for raw in encoded:
            value = bytes((_VALUE_STRING,)) + varint(len(raw)) + raw
            out += bytes((_LAYER_VALUES,)) + varint(len(value)) + value
        return bytes(out)
    size = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    head = np.empty((4, size.size), dtype=np.uint64)  # Layer.values key, length, Value key, size
    head[0] = _LAYER_VALUES
    head[1] = 1 + varint_len(size.astype(np.uint64)) + size
    head[2] = _VALUE_STRING
    head[3] = size
    cols = varint_cols(head)
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return interleave(flat(cols), cols.lens, blob, size).tobytes()


def _int_values(values: I64) -> bytes:
    """Value-table entries for integers: ``uint_value`` if ≥ 0 else ``sint_value``."""
    negative = values < 0
    signed = bool(negative.any())  # most tables: no zigzag, one Value key for all
    unsigned = values.view(np.uint64)
    body = varint_cols(np.where(negative, zigzag64(values), unsigned) if signed else unsigned)
    # Layer.values key, Value length (at most 11), Value key: one-byte varints each.
    head = np.empty((3, values.size), dtype=np.uint8)
    head[0] = _LAYER_VALUES
    head[1] = body.lens + 1
    head[2] = np.where(negative, _VALUE_SINT, _VALUE_UINT) if signed else _VALUE_UINT
    framing = Cols(head, np.ones(head.shape, dtype=bool), np.full(values.size, 3, np.int64))
    return flat(join([framing, body], values.size)).tobytes()


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
    if isinstance(layer, PointLayer) and n <= _SMALL_POINTS:
        return _small_points(layer.name, x, y, ids, layer.properties, extent)
    if isinstance(layer, LineLayer) and n <= _SMALL_LINES:
        return _small_lines(layer.name, line_geom, ids, layer.properties, n_all, kept, extent)
    tags = _tags(layer.properties, n_all, kept)

    body: list[Cols | Const] = []
    if ids is not None:
        body += [Const(bytes((_FEATURE_ID,))), varint_cols(ids)]
    if tags.cols is not None:
        has_tags = tags.cols.lens > 0
        body += [
            Const(bytes((_FEATURE_TAGS,)), None if has_tags.all() else has_tags),
            varint_cols(tags.cols.lens.astype(np.uint32), has_tags),
            tags.cols,
        ]
    if isinstance(layer, PointLayer):
        geom_type = _POINT
        point = np.empty((3, n), dtype=np.uint32)
        point[0] = _MOVE_TO_1
        zigzag32(x, out=point[1])
        zigzag32(y, out=point[2])
        geom = varint_cols(point)
        geom_lens = geom.lens
    else:
        geom_type = _LINESTRING
        geom_bytes, geom_lens = flat(line_geom.vertices), line_geom.lens
    body += [
        Const(bytes((_FEATURE_TYPE, geom_type, _FEATURE_GEOMETRY))),
        varint_cols(geom_lens.astype(np.uint32)),
    ]
    # Layer.features key and the Feature message length, then the Feature fields.
    feature_lens = geom_lens.copy()
    for part in body:
        feature_lens += part.lens
    framed = [
        Const(bytes((_LAYER_FEATURES,))),
        varint_cols(feature_lens.astype(np.uint32)),
        *body,
    ]
    if isinstance(layer, PointLayer):
        features = flat(join([*framed, geom], n))
    else:
        prefix = join(framed, n)
        features = interleave(flat(prefix), prefix.lens, geom_bytes, geom_lens)
    return b"".join(
        [
            length_delimited(_LAYER_NAME, layer.name.encode()),
            features.tobytes(),
            tags.keys,
            tags.values,
            bytes((_LAYER_EXTENT,)) + varint(extent),
            bytes((_LAYER_VERSION, LAYER_VERSION)),
        ]
    )


# --- small point layers --------------------------------------------------------------------------

#: Point layers of up to this many features take `_small_points`: a few dozen numpy calls cost
#: the vectorised path about 0.2 ms per layer whatever its size, which dominates overview tiles.
_SMALL_POINTS = 64

#: Line layers of up to this many (kept) features take `_small_lines`: z14 tiles hold a few
#: sequences, whose value tables cost the vectorised path about 0.2 ms per layer.
_SMALL_LINES = 32

#: Varints of 0 .. 1023: key and value indices and lengths of the small path.
_SHORT = tuple(varint(v) for v in range(1 << 10))
#: ``_CONTINUED[k]``: the continuation bit set in the low ``k - 1`` bytes (a ``k``-byte varint).
_CONTINUED = (0, *(int.from_bytes(b"\x80" * (k - 1), "little") for k in range(1, 9)))
#: ``Layer.values`` key, Value length, Value key of an integer entry by its varint's length.
_UINT_HEAD = tuple(bytes((_LAYER_VALUES, k + 1, _VALUE_UINT)) for k in range(11))
_SINT_HEAD = tuple(bytes((_LAYER_VALUES, k + 1, _VALUE_SINT)) for k in range(11))


def _varints(values: list[int]) -> list[bytes]:
    """`varint` of each value (``≥ 0``), about twice as fast for ids and times (``< 2**56``).

    The 7-bit groups are spread to one per byte in three steps that halve the group size (28-bit
    halves into 32-bit lanes, 14 bits into 16, 7 into 8), then all bytes but the last get their
    continuation bit.

    >>> edges = [0, 1023, 1024, 2**14, 2**53 - 1, 2**56 - 1, 2**56, 2**63 - 1]
    >>> _varints(edges) == [varint(v) for v in edges]
    True
    """
    short, continued = _SHORT, _CONTINUED
    out = []
    for v in values:
        if v < 0x400:
            out.append(short[v])
        elif v < 1 << 56:
            size = (v.bit_length() + 6) // 7
            y = (v & 0xFFFFFFF) | (v >> 28 << 32)
            y = (y & 0x00003FFF00003FFF) | ((y & 0x0FFFC0000FFFC000) << 2)
            y = (y & 0x007F007F007F007F) | ((y & 0x3F803F803F803F80) << 1)
            out.append((y | continued[size]).to_bytes(size, "little"))
        else:
            out.append(varint(v))
    return out


def _small_points(
    name: str, x: I32, y: I32, ids: U64 | None, properties: dict[str, Column], extent: int
) -> bytes:
    """`_encode_layer` for a few points in plain Python: the same bytes, without numpy's costs.

    Coordinates and ids come checked (`_coords`, `_feature_ids`) and the columns are checked by
    `_columns` as on the vectorised path, so both raise the same errors.
    """
    short = _SHORT
    memo: dict[int, bytes] = {}  # varints of large integers: a feature id is often a value too
    if ids is None:
        id_fields = [b""] * x.size
    else:
        id_list = ids.tolist()
        memo = dict(zip(id_list, _varints(id_list), strict=True))
        id_fields = [b"\x08" + memo[v] for v in id_list]  # Feature.id
    tags, keys, values = _small_tags(_columns(properties, x.size, None), x.size, memo)
    out = [length_delimited(_LAYER_NAME, name.encode())]
    for px, py, id_field, tag_bytes in zip(x.tolist(), y.tolist(), id_fields, tags, strict=True):
        zx, zy = (px << 1) ^ (px >> 31), (py << 1) ^ (py >> 31)  # zigzag
        # Feature.type Point, Feature.geometry: its length, MoveTo(1), dx, dy
        if 0x80 <= zx < 0x4000 and 0x80 <= zy < 0x4000:  # two bytes each: most points of a tile
            gx, gy = zx & 0x7F | 0x80, zy & 0x7F | 0x80
            geom = bytes((0x18, 1, 0x22, 5, 9, gx, zx >> 7, gy, zy >> 7))
        else:
            vx, vy = _varints([zx, zy])
            geom = b"\x18\x01\x22" + short[1 + len(vx) + len(vy)] + b"\x09" + vx + vy
        if tag_bytes:  # Feature.tags
            size = len(tag_bytes)
            body = id_field + b"\x12" + (short[size] if size < 0x400 else varint(size))
            body += tag_bytes + geom
        else:
            body = id_field + geom
        size = len(body)
        out.append(b"\x12" + (short[size] if size < 0x400 else varint(size)) + body)
    out += [keys, values, bytes((_LAYER_EXTENT,)) + varint(extent)]
    out.append(bytes((_LAYER_VERSION, LAYER_VERSION)))
    return b"".join(out)


def _small_lines(name: str, geometry: _LineGeometry, ids: U64 | None,
                 properties: dict[str, Column], n_all: int, kept: I64 | None,
                 extent: int) -> bytes:
    """`_encode_layer` for a few line features: the geometry encoded as on the vectorised path
    (lines hold hundreds of vertices), the tags and the framing in plain Python; the same
    bytes. ``ids`` are those of the kept features."""
    short = _SHORT
    n = n_all if kept is None else kept.size
    memo: dict[int, bytes] = {}
    if ids is None:
        id_fields = [b""] * n
    else:
        id_list = ids.tolist()
        memo = dict(zip(id_list, _varints(id_list), strict=True))
        id_fields = [b"\x08" + memo[v] for v in id_list]  # Feature.id
    tags, keys, values = _small_tags(_columns(properties, n_all, kept), n, memo)
    geom = flat(geometry.vertices).tobytes()
    out = [length_delimited(_LAYER_NAME, name.encode())]
    end = 0
    for id_field, tag_bytes, size in zip(id_fields, tags, geometry.lens.tolist(), strict=True):
        start, end = end, end + size
        # Feature.type LineString, Feature.geometry: its length and bytes
        body = id_field
        if tag_bytes:  # Feature.tags
            body += b"\x12" + (short[len(tag_bytes)] if len(tag_bytes) < 0x400
                                else varint(len(tag_bytes))) + tag_bytes
        body += b"\x18\x02\x22" + (short[size] if size < 0x400 else varint(size))
        body += geom[start:end]
        total = len(body)
        out.append(b"\x12" + (short[total] if total < 0x400 else varint(total)) + body)
    out += [keys, values, bytes((_LAYER_EXTENT,)) + varint(extent)]
    out.append(bytes((_LAYER_VERSION, LAYER_VERSION)))
    return b"".join(out)


def _small_tags(
    columns: _Columns, n: int, memo: dict[int, bytes]
) -> tuple[list[bytes], bytes, bytes]:
    """`_tags` in plain Python: tag bytes per feature (``b""`` without tags), keys, values.

    The values table is laid out as `_tags` lays it out: ``false`` then ``true``, the strings in
    first-use order (categories first, by code), then each integer column's distinct values in
    ascending order, columns with fewer distinct values first, a value already placed by an
    earlier column not repeated. ``memo`` holds varints of some large integers.
    """
    if not columns.names:
        return [b""] * n, b"", b""
    short = _SHORT
    pairs: list[list[bytes]] = [[] for _ in columns.names]  # per key, per feature (b"": absent)
    values: list[bytes] = []
    base = 0

    def put(ki: int, slots: list[int], end: int) -> None:
        """Tag bytes of key ``ki`` per feature from the value slots (< ``end``) of its values."""
        key = varint(ki)
        index = short if end <= len(short) else [varint(s) for s in range(end)]
        mask = columns.present[ki]
        if mask is None:
            pairs[ki] = [key + index[s] for s in slots]
        else:
            it = iter(slots)
            pairs[ki] = [key + index[next(it)] if p else b"" for p in mask.tolist()]

    if columns.bools:
        flags = [(ki, arr.tolist()) for ki, arr in columns.bools]
        has_false = any(not all(fs) for _, fs in flags)
        has_true = any(any(fs) for _, fs in flags)
        slot_true = base + int(has_false)
        for ki, fs in flags:
            put(ki, [slot_true if flag else base for flag in fs], slot_true + 1)
        for flag, wanted in ((0, has_false), (1, has_true)):
            if wanted:
                values.append(bytes((_LAYER_VALUES, 2, _VALUE_BOOL, flag)))
        base += int(has_false) + int(has_true)
    if columns.strs or columns.cats:
        table: dict[str | None, int] = {}
        for ki, codes, categories in columns.cats:
            code_list = codes.tolist()
            lut = {c: table.setdefault(categories[c], len(table)) for c in sorted(set(code_list))}
            put(ki, [base + lut[c] for c in code_list], base + len(table))
        for ki, strings in columns.strs:
            for s in strings:
                if s is not None and s not in table:
                    table[s] = len(table)
            put(ki, [base + table[s] for s in strings if s is not None], base + len(table))
        values.append(_string_values([s for s in table if s is not None]))
        base += len(table)
    if columns.ints:
        local = [(ki, arr.tolist()) for ki, arr in columns.ints]
        distinct = [sorted(set(v)) for _, v in local]
        slot: dict[int, int] = {}
        for i in sorted(range(len(local)), key=lambda i: len(distinct[i])):  # stable
            new = [v for v in distinct[i] if v not in slot]
            start = base + len(slot)
            slot.update(zip(new, range(start, start + len(new)), strict=True))
            negative = bisect_left(new, 0)  # sorted: the negative values come first
            if negative:  # sint_value, zigzag
                raws = _varints([-2 * v - 1 for v in new[:negative]])
                values += [_SINT_HEAD[len(raw)] + raw for raw in raws]
                new = new[negative:]
            raws = [memo[v] for v in new] if memo.keys() >= set(new) else _varints(new)
            values += [_UINT_HEAD[len(raw)] + raw for raw in raws]
            ki, v_list = local[i]
            put(ki, [slot[v] for v in v_list], base + len(slot))
    keys = b"".join(length_delimited(_LAYER_KEYS, name.encode()) for name in columns.names)
    return [b"".join(row) for row in zip(*pairs, strict=True)], keys, b"".join(values)


@dataclass(frozen=True, slots=True)
class _LineGeometry:
    """Encoded geometry of the kept line features: one ``Cols`` column per vertex."""

    vertices: Cols  # per vertex: its command integer (first two vertices of a part), dx, dy
    lens: I64  # geometry bytes per kept feature
    kept: I64  # indices of the kept features


def _flat_lines(lines: list[list[np.ndarray]] | LineParts) -> tuple[I32, I64, I64]:
    """Vertices (checked coordinates), vertices per part, and the feature of each part."""
    if isinstance(lines, LineParts):
        sizes = np.asarray(lines.part_sizes, dtype=np.int64).reshape(-1)
        counts = np.asarray(lines.feature_parts, dtype=np.int64).reshape(-1)
        raw = np.asarray(lines.vertices)
        if raw.size == 0:
            raw = raw.reshape(0, 2)
        if (sizes < 0).any() or (counts < 0).any() or int(counts.sum()) != sizes.size:
            raise ValueError("feature_parts must be counts that add up to the number of parts")
        if raw.ndim != 2 or raw.shape[1] != 2 or int(sizes.sum()) != raw.shape[0]:
            raise ValueError("vertices must be (m, 2) with m = sum(part_sizes)")
        part_feature = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
        return _coords(raw), sizes, part_feature
    arrays = [np.asarray(part) for feature in lines for part in feature]
    try:
        verts = _coords(np.concatenate(arrays)) if arrays else np.empty((0, 2), np.int32)
    except ValueError as exc:
        raise ValueError("line parts must be (n, 2) arrays") from exc
    if verts.ndim != 2 or verts.shape[1] != 2:
        raise ValueError(f"line parts must be (n, 2) arrays, not {verts.shape[1:]}")
    sizes = np.array([len(a) for a in arrays], dtype=np.int64)
    part_feature = np.repeat(np.arange(len(lines)), [len(feature) for feature in lines])
    return verts, sizes, part_feature


def _line_geometry(lines: list[list[np.ndarray]] | LineParts) -> _LineGeometry:
    """MoveTo/LineTo command streams with zigzag deltas for every feature that keeps a part.

    Consecutive duplicate vertices are dropped, then parts with fewer than two vertices, then
    features without parts. The cursor carries over between the parts of one feature (MVT 2.1
    §4.3), so a later part's MoveTo is relative to the previous part's last vertex.
    """
    empty = np.empty(0, dtype=np.int64)
    verts, sizes, part_feature = _flat_lines(lines)
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
        return _LineGeometry(varint_cols(np.empty((3, 0), np.uint32)), empty, empty)
    first = np.empty(part_feature.size, dtype=bool)  # the first part of each feature
    first[0] = True
    np.not_equal(part_feature[1:], part_feature[:-1], out=first[1:])
    first_part = np.flatnonzero(first)
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
    zigzag32(delta, out=tokens[1:])
    present = np.ones((3, m), dtype=bool)
    present[0] = False
    present[0, starts] = True
    present[0, starts + 1] = True
    vertices = varint_cols(tokens, present)
    lens = np.add.reduceat(vertices.lens, feature_start)  # a feature's vertices are contiguous
    return _LineGeometry(vertices, lens, part_feature[first_part].astype(np.int64))
