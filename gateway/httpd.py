"""A lean threaded HTTP/1.1 server (keep-alive, TCP_NODELAY, one write per answer) around
:class:`gateway.app.Gateway`: a thread per connection, no framework on the request path."""

from __future__ import annotations

import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.app import Gateway, Request, Response
from modelsync.httpd import bind_problem
from modelsync.safejson import NOSNIFF

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_MAX_CHUNK_LINE = 1024
IDLE_TIMEOUT_S = 120.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class GatewayHTTPServer:
    def __init__(self, gateway: Gateway, host: str, port: int, max_body_bytes: int) -> None:
        self.gateway = gateway
        self._inflight = 0
        self._cv = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "modelsync-gateway"
            timeout = IDLE_TIMEOUT_S  # an idle keep-alive connection is closed after this

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _read_chunked(self) -> tuple[bytes, bool]:
                parts: list[bytes] = []
                total = 0
                while True:
                    line = self.rfile.readline(_MAX_CHUNK_LINE)
                    size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(parts), False
                    total += size
                    if total > max_body_bytes:
                        return b"", True
                    parts.append(self.rfile.read(size))
                    self.rfile.readline(_MAX_CHUNK_LINE)

            def _body(self) -> tuple[bytes, bool] | None:
                """(body, too large), or None after answering a malformed framing."""
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    try:
                        body, too_large = self._read_chunked()
                    except ValueError:
                        self._send(Response(400, b'{"error":"malformed chunked body"}'))
                        self.close_connection = True
                        return None
                    if too_large:
                        self.close_connection = True
                    return body, too_large
                text = self.headers.get("Content-Length")
                if not text:
                    return b"", False
                if not (text.strip().isascii() and text.strip().isdigit()):
                    self.close_connection = True
                    self._send(Response(400, b'{"error":"malformed Content-Length"}'))
                    return None
                length = int(text)
                if length > max_body_bytes:
                    self.close_connection = True  # the body is left unread
                    return b"", True
                return self.rfile.read(length), False

            def _dispatch(self) -> None:
                framed = self._body()
                if framed is None:
                    return
                path, _, query = self.path.partition("?")
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(self.command, path, query, headers, framed[0], framed[1])
                with outer._cv:
                    outer._inflight += 1
                try:
                    resp = outer.gateway.handle(req)
                finally:
                    with outer._cv:
                        outer._inflight -= 1
                        outer._cv.notify_all()
                self._send(resp)

            def _send(self, resp: Response) -> None:
                head = [
                    f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, '')}",
                    f"Content-Type: {resp.content_type}",
                    f"Content-Length: {len(resp.body)}",
                    "{}: {}".format(*NOSNIFF),
                ]
                head += [f"{k}: {v}" for k, v in resp.headers.items()]
                if self.close_connection:
                    head.append("Connection: close")
                data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
                if self.command != "HEAD":
                    data += resp.body
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

            def __getattr__(self, name: str) -> Any:
                # any other method (TRACE, ...) is the gateway's to answer (405), not a 501
                if name.startswith("do_") and name[3:].isalpha():
                    return self._dispatch
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        try:
            self.httpd = _Server((host, port), Handler)
        except OSError as exc:  # port in use, no such address: one line and exit 2
            raise bind_problem(exc, host, port) from None
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="gateway-http", daemon=True
        )

    def start(self) -> GatewayHTTPServer:
        self._thread.start()
        return self

    def stop(self, drain_s: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``drain_s``), close."""
        self.httpd.shutdown()
        deadline = time.monotonic() + drain_s
        with self._cv:
            while self._inflight and time.monotonic() < deadline:
                self._cv.wait(0.05)
        self.httpd.server_close()
