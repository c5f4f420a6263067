"""A bounded in-memory pipe: a download's ``write()`` in one thread feeds ``read()`` in another.

The installer streams a ``model.tar.gz`` from the bucket straight into ``tarfile``'s stream
mode through it, so a tarball is decompressed once and never stored on disk. Either side can
give up without leaving the other blocked: the reader ``abandon()``s (the writer's next
``write`` raises ``PipeAbandoned``), and both sides give up when ``stop`` is set.
"""

from __future__ import annotations

import contextlib
import queue
import threading

POLL_S = 0.2


class PipeAbandoned(Exception):
    """The reader gave up (its own error is the one to report)."""


class PipeStopped(Exception):
    """The process is stopping."""


class ChunkPipe:
    def __init__(self, stop: threading.Event, max_chunks: int = 16) -> None:
        self._chunks: queue.Queue[bytes | None] = queue.Queue(max_chunks)
        self._stop = stop
        self._abandoned = threading.Event()
        self._buf = b""
        self._eof = False

    # --- the writer's side (the download) --------------------------------------------------------
    def write(self, data: bytes) -> int:
        if data:
            self._put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """The writer is done (finished or failed): the reader sees the end of the stream."""
        with contextlib.suppress(PipeAbandoned, PipeStopped):
            self._put(None)

    def _put(self, item: bytes | None) -> None:
        while True:
            if self._abandoned.is_set():
                raise PipeAbandoned("the reader gave up")
            if self._stop.is_set():
                raise PipeStopped("stopping")
            try:
                self._chunks.put(item, timeout=POLL_S)
                return
            except queue.Full:
                continue

    # --- the reader's side (tarfile) --------------------------------------------------------------
    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that remain for n < 0); fewer only at the end of the stream."""
        parts: list[bytes] = []
        want = n if n >= 0 else float("inf")
        got = 0
        while got < want:
            if not self._buf and not self._fill():
                break
            take = self._buf if len(self._buf) <= want - got else self._buf[: int(want - got)]
            self._buf = self._buf[len(take) :]
            parts.append(take)
            got += len(take)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def drain(self) -> int:
        """Read to the end of the stream (so the writer finishes, its checksum included)."""
        n = len(self._buf)
        self._buf = b""
        while self._fill():
            n += len(self._buf)
            self._buf = b""
        return n

    def abandon(self) -> None:
        """The reader is done: unblock and fail a writer that is still writing."""
        self._abandoned.set()
        try:
            while True:
                self._chunks.get_nowait()
        except queue.Empty:
            pass

    def _fill(self) -> bool:
        while not self._eof:
            try:
                item = self._chunks.get(timeout=POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    raise PipeStopped("stopping") from None
                continue
            if item is None:
                self._eof = True
                return False
            self._buf = item
            return True
        return False
