"""A small threaded HTTP server for the node daemons' /healthz, /readyz, /metrics, /status, /sync.

The node daemons stay light (no web framework): a route is ``(method, path) -> handler``, and a
handler takes the request body and returns ``(status, document)``; a ``bytes`` document is sent
as text (Prometheus), anything else as JSON.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelsync import safejson
from modelsync.safejson import NOSNIFF
from modelsync.settings import SettingsError

Handler = Callable[[bytes], tuple[int, Any]]
MAX_BODY_BYTES = 1 << 20


def bind_problem(exc: OSError, host: str, port: int) -> SettingsError:
    """The one line a person gets when the listen address cannot be bound."""
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return SettingsError(
            f"MODELSYNC_HTTP_PORT/--port: {where} is already in use by another "
            "process; stop it or choose another port"
        )
    if exc.errno == errno.EACCES:
        return SettingsError(
            f"MODELSYNC_HTTP_PORT/--port: not allowed to listen on {where} "
            "(ports below 1024 need privileges); choose a port >= 1024"
        )
    if exc.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME) or isinstance(exc, socket.gaierror):
        return SettingsError(f"MODELSYNC_HTTP_HOST: {host!r} is not an address of this machine")
    return SettingsError(f"MODELSYNC_HTTP_HOST/PORT: cannot listen on {where}: {exc.strerror}")


def check_bindable(host: str, port: int) -> None:
    """Raise the SettingsError of ``bind_problem`` unless ``host:port`` can be listened on now
    (for servers that bind in another process, such as gunicorn's)."""
    try:
        with socket.create_server((host, port), reuse_port=False) as _sock:
            pass
    except OSError as exc:
        raise bind_problem(exc, host, port) from None


class DaemonHTTPServer:
    def __init__(self, host: str, port: int, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = routes
        server_self = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                handler = server_self.routes.get((method, path))
                text = (self.headers.get("Content-Length") or "0").strip()
                if not (text.isascii() and text.isdigit()):  # no sign, no junk: -1 is refused
                    self.close_connection = True
                    self._send(400, {"error": "malformed Content-Length"})
                    return
                length = int(text)
                if length > MAX_BODY_BYTES:
                    self.close_connection = True  # the body is left unread
                    self._send(413, {"error": "request body too large"})
                    return
                body = self.rfile.read(length) if length else b""
                if handler is None:
                    allowed = [m for (m, p) in server_self.routes if p == path]
                    if allowed:
                        self._send(405, {"error": f"{method} not allowed; use {allowed}"})
                    else:
                        self._send(404, {"error": f"no route {path}"})
                    return
                try:
                    status, doc = handler(body)
                except Exception as exc:  # a handler bug must not kill the server thread
                    status, doc = 500, {"error": f"{type(exc).__name__}: {exc}"}
                self._send(status, doc)

            def _send(self, status: int, doc: Any) -> None:
                if isinstance(doc, bytes):
                    data, ctype = doc, "text/plain; version=0.0.4; charset=utf-8"
                else:
                    data = safejson.dumps(doc, default=str, indent=1).encode()
                    ctype = "application/json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header(*NOSNIFF)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        try:
            self.httpd = ThreadingHTTPServer((host, port), RequestHandler)
        except OSError as exc:
            raise bind_problem(exc, host, port) from None
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    def start(self) -> DaemonHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
