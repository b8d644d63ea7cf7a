"""wayview.tiles.varints: protobuf varints for many features at once, as per-feature byte matrices.

The building blocks of the MVT encoder (`wayview.tiles.mvt`): a part of every feature (a field
key, a length, an id, tag indices, geometry integers) is a ``(width, n)`` byte matrix, feature
``f`` in column ``f``, with a mask of the bytes actually used (`Cols`). Parts are stacked
(`join`) and the mask compacts them into the features' bytes in one step (`flat`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

U8: TypeAlias = npt.NDArray[np.uint8]
U32: TypeAlias = npt.NDArray[np.uint32]
U64: TypeAlias = npt.NDArray[np.uint64]
UInt: TypeAlias = npt.NDArray[np.uint32] | npt.NDArray[np.uint64]
I32: TypeAlias = npt.NDArray[np.int32]
I64: TypeAlias = npt.NDArray[np.int64]
Bools: TypeAlias = npt.NDArray[np.bool_]


def varint(v: int) -> bytes:
    """The varint of one non-negative integer (scalar path for headers and strings)."""
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def length_delimited(key: int, payload: bytes) -> bytes:
    """A length-delimited field (one-byte key): key, varint length, payload."""
    return bytes((key,)) + varint(len(payload)) + payload


def varint_len(v: UInt) -> U8:
    """Byte length of the varint of each value (1..10)."""
    n = np.ones(v.shape, dtype=np.uint8)
    top = int(v.max()) if v.size else 0
    k = 1
    while k < 10 and top >= 1 << (7 * k):
        n += v >= v.dtype.type(1 << (7 * k))
        k += 1
    return n


def zigzag32(v: I32, out: U32 | None = None) -> U32:
    """Zigzag-encode int32 values as uint32 (MVT geometry parameters): 0, -1, 1, -2 → 0, 1, 2, 3.

    The shift wraps like the C expression ``(n << 1) ^ (n >> 31)``, so every int32 is exact.
    """
    res = np.empty(v.shape, dtype=np.uint32) if out is None else out
    signed = res.view(np.int32)
    np.left_shift(v, 1, out=signed)
    signed ^= v >> 31
    return res


def zigzag64(v: I64) -> U64:
    """Zigzag-encode int64 values as uint64 (``sint_value``)."""
    res = np.left_shift(v, 1)
    res ^= v >> 63
    return res.view(np.uint64)


@dataclass(frozen=True, slots=True)
class Cols:
    """Per-feature bytes, feature ``f`` in column ``f``: ``data`` (width, n) and a ``valid`` mask.

    A feature's bytes are its valid entries of column ``f`` from top to bottom; ``lens[f]`` counts
    them. Features run along the last axis so that numpy loops over features (many) rather than
    over the bytes of one varint (a few).
    """

    data: U8
    valid: Bools
    lens: I64


def varint_cols(v: UInt, present: Bools | None = None) -> Cols:
    """Varints of ``v`` (shape ``(n,)`` or ``(rows, n)``), each row padded to the longest varint.

    Feature ``f`` gets the varints of ``v[0, f]``, ``v[1, f]``, … in order; entries where
    ``present`` is false are left out.

    Byte ``k`` of a varint is the low byte of ``v >> 7k`` with the top bit set when the varint
    goes on (``v >> 7k ≥ 128``); when it stops, ``v >> 7k`` < 128 has that bit clear already. The
    same comparison says whether byte ``k + 1`` exists, so no separate length pass is needed.
    """
    v2 = v if v.ndim == 2 else v[None, :]
    rows, n = v2.shape
    top = int(v2.max()) if v2.size else 0
    width = 1
    while width < 10 and top >= 1 << (7 * width):
        width += 1
    mask = None if present is None else present.reshape(rows, n)
    if width == 1:
        valid1 = np.ones((rows, n), dtype=bool) if mask is None else mask
        lens1 = np.full(n, rows, np.int64) if mask is None else mask.sum(axis=0, dtype=np.int64)
        return Cols(v2.astype(np.uint8), valid1, lens1)
    # Every byte at once: v >> 7k for each byte k, its low 8 bits, and the continuation bit
    # where v >> 7(k + 1) is not 0 (a few numpy calls whatever the width, not five per byte).
    shifted = v2[:, None, :] >> _shifts(v2.dtype, width)
    valid = np.empty((rows, width, n), dtype=bool)
    valid[:, 0, :] = True
    np.greater_equal(shifted[:, :-1, :], 0x80, out=valid[:, 1:, :])
    data = shifted.astype(np.uint8)  # keeps the low 8 bits
    data[:, :-1, :] |= np.left_shift(valid[:, 1:, :].view(np.uint8), np.uint8(7))
    if mask is not None:
        valid &= mask[:, None, :]
    valid2 = valid.reshape(rows * width, n)
    return Cols(data.reshape(rows * width, n), valid2, count(valid2))


_SHIFT_CACHE: dict[tuple[np.dtype[np.generic], int], npt.NDArray[np.unsignedinteger]] = {}


def _shifts(dtype: np.dtype[np.generic], width: int) -> npt.NDArray[np.unsignedinteger]:
    """``7k`` for each byte ``k`` of a varint, shaped ``(1, width, 1)`` to broadcast."""
    key = (dtype, width)
    found = _SHIFT_CACHE.get(key)
    if found is None:
        found = _SHIFT_CACHE[key] = (np.arange(width, dtype=dtype) * 7).reshape(1, width, 1)
    return found


def count(valid: Bools) -> I64:
    """Valid entries per feature (column) of a ``(rows, n)`` mask."""
    small = np.uint8 if valid.shape[0] < 0x100 else np.int64  # a narrow sum is cheaper
    counts: I64 = valid.view(np.uint8).sum(axis=0, dtype=small).astype(np.int64)
    return counts


@dataclass(frozen=True, slots=True)
class Const:
    """The same bytes for every feature (or only for those where ``present``), not materialised."""

    raw: bytes
    present: Bools | None = None

    @property
    def lens(self) -> int | I64:
        """Bytes per feature."""
        return len(self.raw) if self.present is None else self.present * len(self.raw)


def join(parts: Sequence[Cols | Const], n: int) -> Cols:
    """Parts one after the other: feature ``f`` gets every part's bytes for ``f`` in order.

    One buffer for all parts; constant parts are written straight into it.
    """
    heights = [len(p.raw) if isinstance(p, Const) else p.data.shape[0] for p in parts]
    data = np.empty((sum(heights), n), dtype=np.uint8)
    valid = np.empty((sum(heights), n), dtype=bool)
    lens = np.zeros(n, dtype=np.int64)
    row = 0
    for part, height in zip(parts, heights, strict=True):
        rows = slice(row, row + height)
        if isinstance(part, Const):
            data[rows] = np.frombuffer(part.raw, dtype=np.uint8)[:, None]
            valid[rows] = True if part.present is None else part.present
        else:
            data[rows] = part.data
            valid[rows] = part.valid
        lens += part.lens
        row += height
    return Cols(data, valid, lens)


def flat(cols: Cols) -> U8:
    """The valid bytes of all features, feature after feature."""
    # Boolean indexing walks the transposed views in feature order without copying them first:
    # about half the cost of `np.compress` on transposed copies.
    out: U8 = cols.data.T[cols.valid.T]
    return out


def interleave(a: U8, a_lens: I64, b: U8, b_lens: I64) -> U8:
    """Per feature, its ``a`` bytes then its ``b`` bytes (``*_lens``: bytes per feature)."""
    total = a_lens + b_lens
    start = np.cumsum(total) - total
    out = np.empty(int(total.sum()), dtype=np.uint8)
    for src, lens, offset in ((a, a_lens, start), (b, b_lens, start + a_lens)):
        src_start = np.cumsum(lens) - lens
        out[np.repeat(offset - src_start, lens) + np.arange(src.size)] = src
    return out
