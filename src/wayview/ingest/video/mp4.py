"""wayview.ingest.video.mp4: a small, defensive ISO-BMFF (MP4/MOV) box reader.

Reads what the video ingest needs and nothing more: the movie header (timescale, creation
time), `udta` boxes (camera make/model), each track's handler, sample-entry formats, edit list
and sample table (sample offsets, sizes and times), and the bytes of single samples or
top-level boxes (BlackVue's `free`).

Untrusted input: every length is checked against its parent, the `moov` box is read at most
once and only up to `MAX_MOOV_BYTES`, sample tables are numpy arrays sized by the bytes that
hold them (never by a count field alone), and a sample table may describe at most
`MAX_SAMPLES` samples. Any inconsistency raises `InvalidInput("corrupt MP4: …")`; loops only
move forward, so no input can make the reader spin.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from wayview.errors import InvalidInput

__all__ = [
    "Box", "Movie", "Track", "child_boxes", "iter_boxes", "iter_top_level_boxes", "read_movie",
    "read_sample", "read_top_level_box",
]

#: Largest `moov` (or other top-level box) read into memory.
MAX_MOOV_BYTES = 64 * 1024 * 1024
#: Most samples one track's table may describe.
MAX_SAMPLES = 4_000_000
#: Most boxes visited in one file (all levels together).
MAX_BOXES = 200_000
#: Deepest box nesting followed.
MAX_DEPTH = 12
#: Seconds between 1904-01-01 (the MP4 epoch) and 1970-01-01.
MP4_EPOCH_OFFSET_S = 2_082_844_800
#: Bytes kept of each `udta` value (make and model strings are short).
_UDTA_VALUE_BYTES = 4096

_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"})
_IntArray = npt.NDArray[np.int64]


def _corrupt(reason: str) -> InvalidInput:
    return InvalidInput(f"corrupt MP4: {reason}")


@dataclass(frozen=True, slots=True)
class Box:
    """One box: its 4-byte type and where its payload lies (offsets into the parent buffer or
    the file)."""

    type: bytes
    start: int
    payload_start: int
    end: int


class _Budget:
    """Counts boxes so that a crafted file cannot make the reader visit millions of them."""

    def __init__(self) -> None:
        self.left = MAX_BOXES

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _corrupt("too many boxes")


def iter_boxes(data: bytes | memoryview, start: int, end: int, budget: _Budget) -> Iterator[Box]:
    """The boxes packed in `data[start:end]` (a box running past `end` is an error).

    >>> [b.type for b in iter_boxes(b"\\0\\0\\0\\x08free\\0\\0\\0\\x09skipx", 0, 17, _Budget())]
    [b'free', b'skip']
    """
    pos = start
    while end - pos >= 8:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise _corrupt("truncated box header")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or size > end - pos:
            raise _corrupt(f"box {kind!r} does not fit in its parent")
        budget.take()
        yield Box(bytes(kind), pos, pos + header, pos + size)
        pos += size


def _file_boxes(fh: BinaryIO, size: int, budget: _Budget) -> Iterator[Box]:
    """Top-level boxes of a file; a truncated last box ends the walk quietly."""
    pos = 0
    while size - pos >= 8:
        fh.seek(pos)
        head = fh.read(16)
        if len(head) < 8:
            return
        box_size, kind = struct.unpack_from(">I4s", head)
        header = 8
        if box_size == 1:
            if len(head) < 16:
                return
            (box_size,) = struct.unpack_from(">Q", head, 8)
            header = 16
        elif box_size == 0:
            box_size = size - pos
        if box_size < header:
            raise _corrupt(f"box {bytes(kind)!r} has an impossible size")
        budget.take()
        end = min(pos + box_size, size)
        yield Box(bytes(kind), pos, pos + header, end)
        pos += box_size


def child_boxes(data: bytes) -> dict[bytes, bytes]:
    """The payload of the first box of each type packed in `data` (what precedes damage).

    >>> child_boxes(b"\\0\\0\\0\\x0bgps abc")
    {b'gps ': b'abc'}
    """
    out: dict[bytes, bytes] = {}
    try:
        for box in iter_boxes(data, 0, len(data), _Budget()):
            out.setdefault(box.type, data[box.payload_start : box.end])
    except InvalidInput:
        pass
    return out


def read_top_level_box(fh: BinaryIO, kind: bytes, *, limit: int = MAX_MOOV_BYTES) -> bytes | None:
    """The payload of the first top-level box of type `kind` (None if absent).

    Raises:
        InvalidInput: the box is larger than `limit` bytes or the file is corrupt.
    """
    return next(iter_top_level_boxes(fh, kind, limit=limit), None)


def iter_top_level_boxes(fh: BinaryIO, kind: bytes, *, limit: int = MAX_MOOV_BYTES
                         ) -> Iterator[bytes]:
    """The payloads of every top-level box of type `kind`, in file order.

    Raises:
        InvalidInput: a box is larger than `limit` bytes or the file is corrupt.
    """
    size = fh.seek(0, os.SEEK_END)
    for box in _file_boxes(fh, size, _Budget()):
        if box.type == kind:
            length = box.end - box.payload_start
            if length > limit:
                raise _corrupt(f"{kind.decode('latin-1')} box larger than {limit} bytes")
            fh.seek(box.payload_start)
            payload = fh.read(length)
            yield payload


@dataclass(slots=True)
class Track:
    """What a track says about itself; sample arrays are empty unless `with_samples`."""

    handler: bytes = b""
    formats: tuple[bytes, ...] = ()
    timescale: int = 0
    duration: int = 0
    #: (segment_duration in movie units, media_time in media units; -1 = empty edit)
    edits: tuple[tuple[int, int], ...] = ()
    sample_offsets: _IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    sample_sizes: _IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: decode time of each sample, in media units
    sample_times: _IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: duration of each sample, in media units
    sample_durations: _IntArray = field(default_factory=lambda: np.zeros(0, np.int64))

    def presentation_offset_s(self, movie_timescale: int) -> float:
        """Seconds to add to a media time to get the movie (presentation) time: the empty
        edits before the first real edit, minus where that edit starts in the media."""
        if not self.timescale:
            return 0.0
        offset = 0.0
        for segment_duration, media_time in self.edits:
            if media_time == -1:
                if movie_timescale:
                    offset += segment_duration / movie_timescale
                continue
            return offset - media_time / self.timescale
        return offset


@dataclass(slots=True)
class Movie:
    """The movie header, `udta` strings and the tracks of a file."""

    timescale: int = 0
    duration: int = 0
    #: Unix seconds from `mvhd` (None when the header says 0)
    creation_time_s: float | None = None
    udta: dict[bytes, bytes] = field(default_factory=dict)
    tracks: list[Track] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """The movie duration in seconds (0 when unknown)."""
        return self.duration / self.timescale if self.timescale else 0.0


def read_movie(fh: BinaryIO, *, sample_formats: frozenset[bytes] = frozenset()) -> Movie:
    """Parse the `moov` box of an open MP4 file.

    Args:
        fh: the file, opened in binary mode.
        sample_formats: sample-entry formats (e.g. `b"camm"`, `b"gpmd"`) whose tracks get
            their sample tables resolved.

    Raises:
        InvalidInput: no `moov` box, or a corrupt one.
    """
    moov = read_top_level_box(fh, b"moov")
    if moov is None:
        raise InvalidInput("not an MP4 video (no moov box)")
    budget = _Budget()
    movie = Movie()
    for box in iter_boxes(moov, 0, len(moov), budget):
        payload = memoryview(moov)[box.payload_start : box.end]
        if box.type == b"mvhd":
            _read_mvhd(payload, movie)
        elif box.type == b"udta":
            movie.udta = _read_udta(payload, budget)
        elif box.type == b"trak":
            movie.tracks.append(_read_trak(payload, budget, sample_formats))
    return movie


def read_sample(fh: BinaryIO, offset: int, size: int) -> bytes:
    """The bytes of one sample (shorter when the file is truncated)."""
    fh.seek(offset)
    return fh.read(size)


# -- boxes -------------------------------------------------------------------------------------


def _full_box(payload: memoryview, need: int) -> tuple[int, memoryview]:
    """(version, body) of a full box whose body must hold at least `need` bytes."""
    if len(payload) < 4 + need:
        raise _corrupt("truncated header box")
    return payload[0], payload[4:]


def _read_mvhd(payload: memoryview, movie: Movie) -> None:
    version, body = _full_box(payload, 16)
    if version == 1:
        if len(body) < 28:
            raise _corrupt("truncated mvhd")
        created, _modified, timescale, duration = struct.unpack_from(">QQIQ", body)
    else:
        created, _modified, timescale, duration = struct.unpack_from(">IIII", body)
    movie.timescale = timescale
    movie.duration = duration
    movie.creation_time_s = float(created - MP4_EPOCH_OFFSET_S) if created else None


def _read_udta(payload: memoryview, budget: _Budget) -> dict[bytes, bytes]:
    """Leaf boxes of `udta` by type (first of each); nested `meta` lists are not walked."""
    out: dict[bytes, bytes] = {}
    try:
        for box in iter_boxes(payload, 0, len(payload), budget):
            end = min(box.end, box.payload_start + _UDTA_VALUE_BYTES)
            out.setdefault(box.type, bytes(payload[box.payload_start : end]))
    except InvalidInput:
        return out  # vendors write odd udta contents; what was read is kept
    return out


def _read_trak(payload: memoryview, budget: _Budget, sample_formats: frozenset[bytes]) -> Track:
    track = Track()
    boxes: dict[bytes, memoryview] = {}
    _collect(payload, budget, boxes, 0)
    if b"mdhd" in boxes:
        version, body = _full_box(boxes[b"mdhd"], 16)
        if version == 1:
            if len(body) < 28:
                raise _corrupt("truncated mdhd")
            _c, _m, track.timescale, track.duration = struct.unpack_from(">QQIQ", body)
        else:
            _c, _m, track.timescale, track.duration = struct.unpack_from(">IIII", body)
    if b"hdlr" in boxes:
        _version, body = _full_box(boxes[b"hdlr"], 8)
        track.handler = bytes(body[4:8])
    if b"stsd" in boxes:
        track.formats = _read_stsd(boxes[b"stsd"], budget)
    if b"elst" in boxes:
        track.edits = _read_elst(boxes[b"elst"])
    if sample_formats.intersection(track.formats):
        _read_sample_table(track, boxes)
    return track


def _collect(payload: memoryview, budget: _Budget, out: dict[bytes, memoryview],
             depth: int) -> None:
    """Leaf boxes of a track by type (first of each), walking the known containers."""
    if depth > MAX_DEPTH:
        raise _corrupt("boxes nested too deeply")
    for box in iter_boxes(payload, 0, len(payload), budget):
        body = payload[box.payload_start : box.end]
        if box.type in _CONTAINERS:
            _collect(body, budget, out, depth + 1)
        else:
            out.setdefault(box.type, body)


def _read_stsd(payload: memoryview, budget: _Budget) -> tuple[bytes, ...]:
    _version, body = _full_box(payload, 4)
    (count,) = struct.unpack_from(">I", body)
    formats = [box.type for box in iter_boxes(body, 4, len(body), budget)]
    return tuple(formats[:count])


def _read_elst(payload: memoryview) -> tuple[tuple[int, int], ...]:
    version, body = _full_box(payload, 4)
    (count,) = struct.unpack_from(">I", body)
    entry = 20 if version == 1 else 12
    if count > (len(body) - 4) // entry:
        raise _corrupt("edit list longer than its box")
    fmt = ">Qq" if version == 1 else ">Ii"
    return tuple(struct.unpack_from(fmt, body, 4 + k * entry) for k in range(count))


def _table(body: memoryview, start: int, count: int, columns: int, dtype: str) -> _IntArray:
    """`count` rows of `columns` big-endian integers at `body[start:]`, as int64."""
    width = np.dtype(dtype).itemsize * columns
    if count > (len(body) - start) // width:
        raise _corrupt("sample table longer than its box")
    raw = np.frombuffer(body, dtype=dtype, count=count * columns, offset=start)
    return raw.astype(np.int64).reshape(count, columns) if columns > 1 else raw.astype(np.int64)


def _read_sample_table(track: Track, boxes: dict[bytes, memoryview]) -> None:
    sizes = _sample_sizes(boxes)
    count = len(sizes)
    if count > MAX_SAMPLES:
        raise _corrupt(f"more than {MAX_SAMPLES} samples in one track")
    chunk_offsets = _chunk_offsets(boxes)
    per_chunk = _samples_per_chunk(boxes, len(chunk_offsets), count)
    chunk_of_sample = np.repeat(np.arange(len(chunk_offsets), dtype=np.int64), per_chunk)
    if len(chunk_of_sample) < count:
        raise _corrupt("chunks hold fewer samples than the size table")
    chunk_of_sample = chunk_of_sample[:count]
    before = np.concatenate(([0], np.cumsum(sizes)[:-1])) if count else sizes
    first_in_chunk = np.concatenate(([0], np.cumsum(per_chunk)[:-1]))
    first_of_sample = first_in_chunk[chunk_of_sample]
    track.sample_offsets = chunk_offsets[chunk_of_sample] + before - before[first_of_sample]
    track.sample_sizes = sizes
    track.sample_durations = _sample_durations(boxes, count)
    track.sample_times = (np.concatenate(([0], np.cumsum(track.sample_durations)[:-1]))
                          if count else track.sample_durations)


def _sample_sizes(boxes: dict[bytes, memoryview]) -> _IntArray:
    if b"stsz" in boxes:
        _version, body = _full_box(boxes[b"stsz"], 8)
        uniform, count = struct.unpack_from(">II", body)
        if count > MAX_SAMPLES:
            raise _corrupt(f"more than {MAX_SAMPLES} samples in one track")
        if uniform:
            return np.full(count, uniform, dtype=np.int64)
        return _table(body, 8, count, 1, ">u4")
    if b"stz2" in boxes:
        _version, body = _full_box(boxes[b"stz2"], 8)
        field_size = body[3]
        (count,) = struct.unpack_from(">I", body, 4)
        if count > MAX_SAMPLES:
            raise _corrupt(f"more than {MAX_SAMPLES} samples in one track")
        if field_size == 8:
            return _table(body, 8, count, 1, ">u1")
        if field_size == 16:
            return _table(body, 8, count, 1, ">u2")
        if field_size == 4:
            packed = _table(body, 8, (count + 1) // 2, 1, ">u1")
            nibbles = np.stack([packed >> 4, packed & 0xF], axis=1).reshape(-1)
            return nibbles[:count]
        raise _corrupt("bad stz2 field size")
    raise _corrupt("no sample size table")


def _chunk_offsets(boxes: dict[bytes, memoryview]) -> _IntArray:
    if b"stco" in boxes:
        _version, body = _full_box(boxes[b"stco"], 4)
        (count,) = struct.unpack_from(">I", body)
        return _table(body, 4, count, 1, ">u4")
    if b"co64" in boxes:
        _version, body = _full_box(boxes[b"co64"], 4)
        (count,) = struct.unpack_from(">I", body)
        offsets = _table(body, 4, count, 1, ">u8")
        if (offsets < 0).any():
            raise _corrupt("chunk offset out of range")
        return offsets
    raise _corrupt("no chunk offset table")


def _samples_per_chunk(boxes: dict[bytes, memoryview], chunks: int, samples: int) -> _IntArray:
    """Samples in each chunk (stsc runs expanded), never adding up to more than `samples`."""
    if b"stsc" not in boxes:
        raise _corrupt("no sample-to-chunk table")
    _version, body = _full_box(boxes[b"stsc"], 4)
    (count,) = struct.unpack_from(">I", body)
    runs = _table(body, 4, count, 3, ">u4")
    per_chunk = np.zeros(chunks, dtype=np.int64)
    for k in range(count):
        first = int(runs[k, 0]) - 1
        last = int(runs[k + 1, 0]) - 1 if k + 1 < count else chunks
        if first < 0 or first >= chunks or last <= first:
            continue
        per_chunk[first:min(last, chunks)] = runs[k, 1]
    # Bound the total before anything is expanded by it.
    total = np.cumsum(per_chunk)
    if len(total) and total[-1] > samples:
        cut = int(np.searchsorted(total, samples, side="left"))
        per_chunk[cut] -= int(total[cut] - samples)
        per_chunk[cut + 1 :] = 0
    return per_chunk


def _sample_durations(boxes: dict[bytes, memoryview], samples: int) -> _IntArray:
    if b"stts" not in boxes:
        raise _corrupt("no time-to-sample table")
    _version, body = _full_box(boxes[b"stts"], 4)
    (count,) = struct.unpack_from(">I", body)
    runs = _table(body, 4, count, 2, ">u4")
    counts = runs[:, 0].copy() if count else np.zeros(0, np.int64)
    total = np.cumsum(counts)
    if len(total) and total[-1] > samples:
        cut = int(np.searchsorted(total, samples, side="left"))
        counts[cut] -= int(total[cut] - samples)
        counts[cut + 1 :] = 0
    durations = np.repeat(runs[:, 1] if count else counts, counts)
    if len(durations) < samples:  # a short table: the last duration repeats
        last = durations[-1] if len(durations) else 0
        durations = np.concatenate((durations, np.full(samples - len(durations), last)))
    return durations.astype(np.int64)
