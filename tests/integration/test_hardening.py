"""Issue #25 with real sockets on 127.0.0.1: the master's try-it reaches only the gateway it
names itself (a reported URL pointing elsewhere is refused, and a socket listening there
receives nothing), follows no redirect, caps time and size, and sends the gateway token only
there; a node daemon refuses a negative Content-Length."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from master_kit import NODE, READ, master_app

from master.api import STATE_KEY
from modelsync.httpd import DaemonHTTPServer
from modelsync.nodeauth import node_token

pytestmark = pytest.mark.integration
GATEWAY_TOKEN = "gateway-token-0123456789"


@dataclass
class FakeGateway:
    """An HTTP server standing in for a node's gateway: answers as ``mode`` says, records what
    reached it."""

    mode: str = "ok"  # ok | redirect | large | slow
    redirect_to: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def start(self) -> tuple[ThreadingHTTPServer, int]:
        gw = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                gw.seen.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                if gw.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", gw.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if gw.mode == "slow":
                    gw.release.wait(30)
                data = b"[" + b"0," * (1 << 20) + b"0]" if gw.mode == "large" else b'{"ok":1}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Model-Version", "3")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):  # a client that stopped reading
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, int(server.server_address[1])


@pytest.fixture
def gateway() -> Iterator[tuple[FakeGateway, int]]:
    fake = FakeGateway()
    server, port = fake.start()
    yield fake, port
    fake.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[socket.socket]:
    """A listening socket where no request of the master may ever arrive."""
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def nothing_arrived(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)  # a pending connection is readable
    return not readable


def master(tmp_path: Path, gateway_port: int, **kw: Any) -> Flask:
    return master_app(
        tmp_path / "m.sqlite3", gateway_token=GATEWAY_TOKEN, gateway_port=gateway_port, **kw
    )


def report_gateway(app: Flask, node: str, url: str) -> None:
    resp = app.test_client().post(
        "/v1/nodes/heartbeat",
        json={"node_id": node, "role": "gateway", "status": {"url": url}},
        headers={"Authorization": f"Bearer {node_token(NODE, node)}"},
    )
    assert resp.status_code == 200, resp.data


def try_it(app: Flask, node: str) -> tuple[int, dict[str, Any]]:
    resp = app.test_client().post(
        "/v1/models/demo/try",
        json={"node": node, "body": {"inputs": {"x": [1.0]}}},
        headers={"Authorization": f"Bearer {READ}"},
    )
    return resp.status_code, resp.get_json()


def test_try_it_reaches_the_gateway_the_master_names_with_the_token(
    tmp_path: Path, gateway: tuple[FakeGateway, int]
) -> None:
    fake, port = gateway
    app = master(tmp_path, port)
    try:
        report_gateway(app, "n1", f"http://127.0.0.1:{port}")
        code, doc = try_it(app, "n1")
        assert code == 200 and doc["status"] == 200 and doc["answer"] == {"ok": 1}, doc
        assert doc["version"] == "3"
        assert fake.seen == [
            {
                "path": "/model/demo/invocations",
                "auth": f"Bearer {GATEWAY_TOKEN}",
                "body": {"inputs": {"x": [1.0]}},
            }
        ]
        # the node's own name in its URL is fine too: the master still sends to the address
        report_gateway(app, "n1", f"http://n1:{port}/")
        assert try_it(app, "n1")[0] == 200 and len(fake.seen) == 2
    finally:
        app.extensions[STATE_KEY].stop()


@pytest.mark.parametrize(
    "reported",
    [
        "http://127.0.0.1:{elsewhere}",  # the same host, another port
        "http://localhost:{elsewhere}/",
        "https://127.0.0.1:{gateway}",  # another scheme
        "http://169.254.169.254:{gateway}/latest/meta-data",  # another host
        "http://evil.example:{gateway}",
    ],
)
def test_a_reported_url_pointing_elsewhere_is_refused_and_nothing_is_sent(
    tmp_path: Path,
    gateway: tuple[FakeGateway, int],
    elsewhere: socket.socket,
    reported: str,
) -> None:
    fake, port = gateway
    app = master(tmp_path, port)
    try:
        url = reported.format(elsewhere=elsewhere.getsockname()[1], gateway=port)
        report_gateway(app, "n1", url)
        code, doc = try_it(app, "n1")
        assert code == 409 and "nothing was sent" in doc["error"], doc
        assert nothing_arrived(elsewhere) and fake.seen == []
        audit = app.test_client().get(
            "/v1/events?kind=audit", headers={"Authorization": f"Bearer {READ}"}
        )
        assert "model_try_refused" in [e["event"] for e in audit.get_json()["events"]]
    finally:
        app.extensions[STATE_KEY].stop()


def test_a_redirect_is_not_followed(
    tmp_path: Path, gateway: tuple[FakeGateway, int], elsewhere: socket.socket
) -> None:
    fake, port = gateway
    fake.mode = "redirect"
    fake.redirect_to = f"http://127.0.0.1:{elsewhere.getsockname()[1]}/steal"
    app = master(tmp_path, port)
    try:
        report_gateway(app, "n1", f"http://127.0.0.1:{port}")
        code, doc = try_it(app, "n1")
        assert code == 200 and doc["status"] == 302 and "not followed" in doc["answer"]["error"]
        assert nothing_arrived(elsewhere) and len(fake.seen) == 1
    finally:
        app.extensions[STATE_KEY].stop()


def test_a_large_answer_is_cut_off(tmp_path: Path, gateway: tuple[FakeGateway, int]) -> None:
    fake, port = gateway
    fake.mode = "large"
    app = master(tmp_path, port, tryit_max_bytes=64 << 10)
    try:
        report_gateway(app, "n1", f"http://127.0.0.1:{port}")
        code, doc = try_it(app, "n1")
        assert code == 502 and "more than 65536 bytes" in doc["error"], doc
    finally:
        app.extensions[STATE_KEY].stop()


def test_a_slow_gateway_is_given_up(tmp_path: Path, gateway: tuple[FakeGateway, int]) -> None:
    import time

    fake, port = gateway
    fake.mode = "slow"
    app = master(tmp_path, port, tryit_timeout_s=1.0)
    try:
        report_gateway(app, "n1", f"http://127.0.0.1:{port}")
        started = time.monotonic()
        code, doc = try_it(app, "n1")
        assert code == 502 and "did not answer" in doc["error"], doc
        assert time.monotonic() - started < 10
    finally:
        fake.release.set()
        app.extensions[STATE_KEY].stop()


def test_a_node_daemon_refuses_a_bad_content_length() -> None:
    got: list[bytes] = []

    def echo(body: bytes) -> tuple[int, Any]:
        got.append(body)
        return 200, {"ok": True}

    server = DaemonHTTPServer("127.0.0.1", 0, {("POST", "/sync"): echo}).start()
    try:
        for length, status in (("-1", 400), ("-5", 400), ("1e3", 400), ("²", 400), ("2", 200)):
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
                head = f"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
                conn.sendall(head.encode() + b"{}")
                answer = conn.recv(4096).decode("latin-1")
            assert answer.startswith(f"HTTP/1.1 {status} "), (length, answer)
        assert got == [b"{}"]
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            conn.sendall(b"GET /<img%20src=x> HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):  # to the end: the server closes
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 404 ") and b"X-Content-Type-Options: nosniff" in answer
        assert b"<img" not in answer and b"\\u003cimg" in answer
    finally:
        server.stop()
