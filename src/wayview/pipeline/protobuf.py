"""wayview.pipeline.protobuf: the varints of the protobuf wire format (meshes, ONNX models)."""

from __future__ import annotations

__all__ = ["read_varint", "write_varint"]


def write_varint(value: int) -> bytes:
    """The varint of one non-negative integer.

    >>> write_varint(1), write_varint(300)
    (b'\\x01', b'\\xac\\x02')
    """
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(view: bytes | memoryview, position: int) -> tuple[int, int]:
    """The varint at `position` and the position after it.

    Raises:
        ValueError: the data ends inside it, or it is longer than 10 bytes.

    >>> read_varint(b"\\xac\\x02", 0)
    (300, 2)
    """
    result = shift = 0
    start = position
    while True:
        if position >= len(view):
            raise ValueError(f"truncated varint at byte {start}")
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift >= 64:
            raise ValueError(f"varint longer than 10 bytes at byte {start}")
