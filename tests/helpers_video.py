"""Test videos: tiny MP4s encoded with PyAV, plus a hand-built CAMM track or BlackVue `free` box.

`make_camm_mp4` writes what mapillary_tools uploads as `mly_camm_video`: the encoded video
(`ftyp`, `mdat`, `moov` as FFmpeg writes them), then a second `mdat` with one CAMM packet per
GPS fix, and a new `moov` = the old children + a `camm` track (+ `udta` with `@mak`/`@mod`).
The original tracks' chunk offsets stay valid because nothing before them moves.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def encode_video(path: Path, *, seconds: float, fps: int = 10, width: int = 64,
                 height: int = 48) -> None:
    """A small MPEG-4 video whose frames differ (a moving bar), `moov` at the end."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for k in range(int(seconds * fps)):
            pixels = np.full((height, width, 3), 40, dtype=np.uint8)
            pixels[:, (k * 3) % width : (k * 3) % width + 4] = 250
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = k
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def top_level(data: bytes) -> list[tuple[bytes, int, int]]:
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
        out.append((kind, pos, pos + size))
        pos += size
    return out


def camm_packet(kind: int, lat: float, lon: float, alt: float, epoch_s: float | None) -> bytes:
    if kind == 5:
        return struct.pack("<HH", 0, 5) + struct.pack("<ddd", lat, lon, alt)
    return struct.pack("<HH", 0, 6) + struct.pack(
        "<didd7f", epoch_s or 0.0, 3, lat, lon, alt, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0)


def camm_trak(sample_sizes: Sequence[int], sample_deltas: Sequence[int], chunk_offset: int,
              timescale: int, empty_edit: int = 0) -> bytes:
    stsd = full_box(b"stsd", struct.pack(">I", 1) + box(b"camm", b"\0" * 6 + struct.pack(">H", 1)))
    stts = full_box(b"stts", struct.pack(">I", len(sample_deltas)) + b"".join(
        struct.pack(">II", 1, d) for d in sample_deltas))
    stsc = full_box(b"stsc", struct.pack(">IIII", 1, 1, len(sample_sizes), 1))
    stsz = full_box(b"stsz", struct.pack(">II", 0, len(sample_sizes)) + b"".join(
        struct.pack(">I", s) for s in sample_sizes))
    stco = full_box(b"stco", struct.pack(">II", 1, chunk_offset))
    stbl = box(b"stbl", stsd + stts + stsc + stsz + stco)
    minf = box(b"minf", box(b"dinf", b"") + stbl)
    mdhd = full_box(b"mdhd", struct.pack(">IIIIHH", 0, 0, timescale, sum(sample_deltas), 0, 0))
    hdlr = full_box(b"hdlr", struct.pack(">I4s12s", 0, b"camm", b"\0" * 12) + b"camm\0")
    tkhd = full_box(b"tkhd", b"\0" * 80, flags=3)
    trak = tkhd + box(b"mdia", mdhd + hdlr + minf)
    if empty_edit:
        elst = full_box(b"elst", struct.pack(">I", 2) + struct.pack(">Ii", empty_edit, -1)
                        + b"\0\0\0\0" + struct.pack(">Ii", 0, 0) + b"\0\0\0\0")
        trak += box(b"edts", elst)
    return box(b"trak", trak)


def add_camm_track(path: Path, fixes: Sequence[tuple[float, float, float, float]], *,
                   kind: int = 6, make: str | None = "TestMake", model: str | None = "TestModel",
                   start_epoch_s: float = 1_619_863_200.0, empty_edit_s: float = 0.0) -> None:
    """Append a CAMM track: `fixes` are (time_s, lat, lon, alt); type 6 carries epoch times."""
    data = path.read_bytes()
    boxes = top_level(data)
    moov = next(b for b in boxes if b[0] == b"moov")
    assert moov[2] == len(data), "expected moov at the end"
    mvhd_timescale = _mvhd_timescale(data[moov[1] + 8 : moov[2]])
    timescale = 1000
    packets = [camm_packet(kind, lat, lon, alt, start_epoch_s + t) for t, lat, lon, alt in fixes]
    deltas = [round((fixes[k + 1][0] - fixes[k][0]) * timescale) for k in range(len(fixes) - 1)]
    deltas.append(0)
    head = data[: moov[1]]
    mdat = box(b"mdat", b"".join(packets))
    chunk_offset = len(head) + 8
    trak = camm_trak([len(p) for p in packets], deltas, chunk_offset, timescale,
                     empty_edit=round(empty_edit_s * mvhd_timescale))
    udta = b""
    if make:
        udta += box(b"@mak", make.encode())
    if model:
        udta += box(b"@mod", model.encode())
    children = data[moov[1] + 8 : moov[2]] + trak + (box(b"udta", udta) if udta else b"")
    path.write_bytes(head + mdat + box(b"moov", children))


def _mvhd_timescale(moov_payload: bytes) -> int:
    pos = 0
    while pos + 8 <= len(moov_payload):
        size, kind = struct.unpack_from(">I4s", moov_payload, pos)
        if kind == b"mvhd":
            version = moov_payload[pos + 8]
            at = pos + 12 + (16 if version == 1 else 8)
            return int(struct.unpack_from(">I", moov_payload, at)[0])
        pos += size
    raise AssertionError("no mvhd")


def add_blackvue_gps(path: Path, nmea: bytes, model: str = "DR900X Plus") -> None:
    """Insert a BlackVue `free` box (with `gps ` NMEA lines and `cprt`) before `moov`."""
    data = path.read_bytes()
    moov = next(b for b in top_level(data) if b[0] == b"moov")
    free = box(b"free", box(b"gps ", nmea) + box(b"cprt", f'{{"model":"{model}"}}'.encode()))
    # Inserting before moov moves nothing that moov points at (the media data comes first).
    path.write_bytes(data[: moov[1]] + free + data[moov[1] :])
