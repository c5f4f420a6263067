"""A stream's bytes decompressed as they are read: gzip, bzip2, xz, or left as they are.

Stricter and safer than ``tarfile``'s own stream mode: compressed input that ends before its
end-of-stream marker is an error (``tarfile`` would take it for the end of the archive, and
accept the truncated tarball), and each decompression step yields at most ``chunk_bytes`` (a
small, highly compressed input cannot blow up in memory). Concatenated members and zero padding
after the last are accepted, as ``gzip`` accepts them.

gzip is inflated by the fastest zlib-compatible module installed (the one pass of a tarball
install is bound by inflate): ``isal``'s igzip, then ``zlib-ng``, then the standard library's
``zlib``, which is always there. They share zlib's API and its gzip checks (CRC and length).
"""

from __future__ import annotations

import bz2
import importlib
import lzma
import zlib
from types import ModuleType
from typing import Any, Protocol

GZIP, BZIP2, XZ, PLAIN = "gzip", "bzip2", "xz", "plain"
_MAGIC = ((b"\x1f\x8b", GZIP), (b"BZh", BZIP2), (b"\xfd7zXZ\x00", XZ))
# zlib-compatible inflaters, fastest first; the standard library's is the fallback
INFLATERS = ("isal.isal_zlib", "zlib_ng.zlib_ng", "zlib")


def fastest_inflater(names: tuple[str, ...] = INFLATERS) -> ModuleType:
    """The first of ``names`` that imports (``zlib`` always does)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return zlib


INFLATER = fastest_inflater()


def _errors(inflater: ModuleType) -> tuple[type[BaseException], ...]:
    return (inflater.error, zlib.error, OSError, EOFError, lzma.LZMAError, ValueError)


class DecompressError(ValueError):
    """Corrupt or truncated compressed input."""


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Decompressed:
    def __init__(
        self, raw: Readable, chunk_bytes: int = 1 << 20, inflater: ModuleType | None = None
    ) -> None:
        self._raw = raw
        self._zlib = inflater or INFLATER
        self._errors = _errors(self._zlib)
        self._chunk = chunk_bytes
        head = b""
        while len(head) < 6 and (more := raw.read(chunk_bytes)):
            head += more
        self._in = head  # input not yet given to the decompressor
        self.kind = next((k for magic, k in _MAGIC if head.startswith(magic)), PLAIN)
        self._d: Any = None if self.kind == PLAIN else self._new()
        self._out = bytearray()
        self._end = False

    def _new(self) -> Any:
        if self.kind == GZIP:
            # checks the gzip CRC and length
            return self._zlib.decompressobj(16 + self._zlib.MAX_WBITS)
        return bz2.BZ2Decompressor() if self.kind == BZIP2 else lzma.LZMADecompressor()

    def read(self, n: int = -1, /) -> bytes:
        while (n < 0 or len(self._out) < n) and not self._end:
            self._step()
        if n < 0 or n >= len(self._out):
            out = bytes(self._out)
            self._out.clear()
        else:
            out = bytes(self._out[:n])
            del self._out[:n]
        return out

    def drain(self) -> int:
        """Read (and drop) what is left, to its end; returns how many bytes that was."""
        n = 0
        while not self._end:
            self._step()
            n += len(self._out)
            self._out.clear()
        return n + len(self._out)

    def _read_raw(self) -> bytes:
        data, self._in = self._in or self._raw.read(self._chunk), b""
        return data

    def _step(self) -> None:
        """Add some output, or reach the end; DecompressError on corrupt or truncated input."""
        d = self._d
        if d is None:
            data = self._read_raw()
            self._out += data
            self._end = not data
            return
        if d.eof:  # a member ended: zero padding, the end, or another member follows
            self._in = self._in.lstrip(b"\0")
            while not self._in:
                more = self._raw.read(self._chunk)
                if not more:
                    self._end = True
                    return
                self._in = more.lstrip(b"\0")
            d = self._d = self._new()
        zlib_like = self.kind == GZIP
        wants_input = zlib_like or d.needs_input
        data = self._read_raw() if wants_input else b""
        try:
            out = d.decompress(data, self._chunk)
        except self._errors as exc:
            raise DecompressError(f"corrupt {self.kind} data: {exc}") from None
        if zlib_like:
            self._in = d.unused_data if d.eof else d.unconsumed_tail
        elif d.eof:
            self._in = d.unused_data
        if out:
            self._out += out
        elif wants_input and not data and not d.eof:
            raise DecompressError(f"{self.kind} data ends early (truncated)")
