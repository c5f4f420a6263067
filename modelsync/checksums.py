"""CRC32C as GCS reports it (base64 of the big-endian digest), of bytes and of streams."""

from __future__ import annotations

import base64
from typing import IO

import google_crc32c


def crc32c_b64(data: bytes) -> str:
    """The base64 big-endian CRC32C that GCS reports for ``data``."""
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


class Crc32cWriter:
    """A file wrapper that checksums what passes through it (streaming, constant memory)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._crc = google_crc32c.Checksum()
        self.bytes = 0
        self.error: BaseException | None = None  # raised by the destination, not the store

    def write(self, data: bytes) -> int:
        self._crc.update(data)
        self.bytes += len(data)
        try:
            return self._fh.write(data)
        except BaseException as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._fh.flush()

    def crc32c_b64(self) -> str:
        return base64.b64encode(self._crc.digest()).decode()
