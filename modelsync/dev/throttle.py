"""A link on 127.0.0.1 for tests and benchmarks: a TCP forwarder whose connections share one
rate, as the connections of a node share its link to the bucket, and which can turn into a
blackhole: while ``blackhole`` is set, new connections are accepted and never answered and open
ones stop moving bytes (a network that drops everything, as a GCS outage looks to a client).

Bytes from the target to the client (downloads) pass in chunks of at most ``CHUNK`` bytes, each
given its own slot of the shared rate in the order they arrive, so a small answer (a metadata
read) waits behind at most a few chunks of a large download, as on a real link with a short
queue. Requests towards the target are not slowed. Only ever forwards to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

CHUNK = 16 * 1024


class SharedRate:
    """A link of ``bytes_per_s`` shared by every caller of ``take`` (None: not limited)."""

    def __init__(self, bytes_per_s: float | None) -> None:
        self.bytes_per_s = bytes_per_s
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def take(self, n: int) -> None:
        if self.bytes_per_s is None:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.bytes_per_s
        if start > now:
            time.sleep(start - now)


class LinkProxy:
    def __init__(self, target_port: int, bytes_per_s: float | None = None) -> None:
        self.target_port = target_port
        self.rate = SharedRate(bytes_per_s)
        self.blackhole = threading.Event()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self.bytes_down = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="throttle", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _addr = self._server.accept()
            except (TimeoutError, OSError):
                continue
            if self.blackhole.is_set():
                with self._lock:
                    self._socks.append(client)  # held, never answered
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, throttled: bool) -> None:
        src.settimeout(0.5)
        try:
            while not self._stop.is_set():
                try:
                    data = src.recv(CHUNK if throttled else 65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                while self.blackhole.is_set() and not self._stop.is_set():
                    self._stop.wait(0.1)  # hold the bytes: nothing gets through
                if throttled:
                    self.rate.take(len(data))
                    with self._lock:
                        self.bytes_down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
        self._thread.join(5)

    def __enter__(self) -> LinkProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
