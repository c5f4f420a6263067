"""TF Serving's REST API (or a container model's server) passed through unchanged, over a small
pool of keep-alive connections."""

from __future__ import annotations

import http.client
import socket
import threading

from gateway.errors import GatewayError

# a reused keep-alive connection the server has closed fails with one of these before any answer
_STALE = (
    http.client.RemoteDisconnected,
    BrokenPipeError,
    ConnectionResetError,
    http.client.CannotSendRequest,
    http.client.BadStatusLine,
)


class RestProxy:
    def __init__(
        self,
        target: str,
        timeout_s: float = 30.0,
        max_idle: int = 64,
        name: str = "TF Serving REST",
    ) -> None:
        host, _, port = target.rpartition(":")
        self.target = target
        self.name = name  # what the errors call it
        self.host, self.port = host or "127.0.0.1", int(port)
        self.timeout_s = timeout_s
        self.max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def forward(
        self, method: str, path: str, body: bytes, content_type: str | None
    ) -> tuple[int, bytes, str]:
        """(status, body, content type) exactly as TF Serving answered."""
        headers = (
            {"Content-Type": content_type or "application/json"}
            if body or method in ("POST", "PUT", "PATCH")
            else {}
        )
        for attempt in (0, 1):
            try:
                conn, reused = self._take()
            except OSError as exc:
                raise GatewayError(
                    503, f"{self.name} at {self.target} is unavailable: {exc}"
                ) from exc
            try:
                conn.request(method, path, body=body if body or headers else None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except _STALE as exc:
                conn.close()
                if reused and attempt == 0:
                    continue
                raise GatewayError(
                    503, f"{self.name} at {self.target} closed the connection: {exc}"
                ) from exc
            except TimeoutError as exc:
                conn.close()
                raise GatewayError(
                    504, f"{self.name} at {self.target} did not answer in {self.timeout_s:g} s"
                ) from exc
            except OSError as exc:
                conn.close()
                raise GatewayError(
                    503, f"{self.name} at {self.target} is unavailable: {exc}"
                ) from exc
            if resp.will_close:
                conn.close()
            else:
                self._give(conn)
            return resp.status, data, resp.getheader("Content-Type") or "application/json"
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
