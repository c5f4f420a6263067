"""TFRecord files without TensorFlow: the format of TF Serving's warmup file
(``assets.extra/tf_serving_warmup_requests``: one serialized ``PredictionLog`` per record).

Each record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32
masked_crc32c(data)``, little-endian; the mask is TensorFlow's (``tensorflow/core/lib/hash/
crc32c.h``: rotate right by 15 bits, add 0xa282ead8).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import google_crc32c

_MASK_DELTA = 0xA282EAD8


class TFRecordError(ValueError):
    """Not a TFRecord file (truncated, or a checksum does not match)."""


def masked_crc(data: bytes) -> int:
    crc = int(google_crc32c.value(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(data: bytes, limit: int | None = None) -> Iterator[bytes]:
    """The records of a TFRecord file's bytes, checked; at most ``limit`` (more: an error)."""
    pos, n = 0, 0
    while pos < len(data):
        if len(data) - pos < 12:
            raise TFRecordError(f"truncated record header at byte {pos}")
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        if masked_crc(header) != header_crc:
            raise TFRecordError(f"corrupt record length at byte {pos}")
        start, end = pos + 12, pos + 12 + length
        if end + 4 > len(data):
            raise TFRecordError(f"truncated record at byte {pos}")
        body = data[start:end]
        (body_crc,) = struct.unpack("<I", data[end : end + 4])
        if masked_crc(body) != body_crc:
            raise TFRecordError(f"corrupt record data at byte {pos}")
        n += 1
        if limit is not None and n > limit:
            raise TFRecordError(f"more than {limit} records")
        yield body
        pos = end + 4


def write_records(records: Iterable[bytes]) -> bytes:
    out = bytearray()
    for body in records:
        header = struct.pack("<Q", len(body))
        out += header + struct.pack("<I", masked_crc(header)) + body
        out += struct.pack("<I", masked_crc(body))
    return bytes(out)
