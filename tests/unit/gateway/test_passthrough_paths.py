"""The gateway forwards only TF Serving's REST API paths, by modelsync's name, version and label
rules: '..' segments, %-escapes and anything else never reach TF Serving."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import Gateway, Request
from gateway.settings import GatewaySettings
from modelsync.settings import NodeSettings

NODE = NodeSettings(node_id="n1", http_port=0)


class RecordingProxy:
    """Stands in for TF Serving's REST port: records what would be forwarded."""

    def __init__(self) -> None:
        self.forwarded: list[tuple[str, str]] = []

    def forward(
        self, method: str, path: str, body: bytes, content_type: str | None
    ) -> tuple[int, bytes, str]:
        self.forwarded.append((method, path))
        return 200, b'{"model_version_status": []}', "application/json"


@pytest.fixture
def gateway() -> tuple[Gateway, RecordingProxy]:
    proxy = RecordingProxy()
    return Gateway(GatewaySettings(NODE), tfs=object(), proxy=proxy), proxy  # type: ignore[arg-type]


FORWARDED = [
    ("GET", "/v1/models/two"),
    ("GET", "/v1/models/two/metadata"),
    ("GET", "/v1/models/two/versions/1"),
    ("GET", "/v1/models/two/versions/1/metadata"),
    ("GET", "/v1/models/two/labels/stable"),
    ("GET", "/v1/models/two/labels/stable/metadata"),
    ("POST", "/v1/models/two:predict"),
    ("POST", "/v1/models/two/versions/12:classify"),
    ("POST", "/v1/models/two/labels/canary:regress"),
    ("POST", "/v1/models/a.b-c_d:predict"),
]


@pytest.mark.parametrize(("method", "path"), FORWARDED)
def test_tf_serving_rest_paths_are_forwarded_as_they_are(
    gateway: tuple[Gateway, RecordingProxy], method: str, path: str
) -> None:
    gw, proxy = gateway
    resp = gw.handle(Request(method, path, "", {}, b"{}" if method == "POST" else b""))
    assert resp.status == 200
    assert proxy.forwarded == [(method, path)]


REFUSED = [
    ("GET", "/v1/models/two/../../monitoring/prometheus/metrics", 404),
    ("GET", "/v1/models/..", 404),
    ("GET", "/v1/models/two/versions/1/../../../x", 404),
    ("GET", "/v1/models/two%2F..%2F..%2Fmonitoring", 404),
    ("GET", "/v1/models/%2e%2e/metadata", 404),
    ("GET", "/v1/models/two%2Fversions%2F1", 404),
    ("GET", "/v1/models//two", 404),
    ("GET", "/v1/models/two/", 404),
    ("GET", "/v1/models/two/versions/01", 404),
    ("GET", "/v1/models/two/versions/-1", 404),
    ("GET", "/v1/models/two/labels/9bad", 404),
    ("GET", "/v1/models/two:bad", 404),
    ("GET", "/v1/models/two/metadata/extra", 404),
    ("GET", "/v1/models/two\\..\\x", 404),
    ("GET", "/v1/models/<img src=x>", 404),
    ("POST", "/v1/models/two/metadata", 405),
    ("GET", "/v1/models/two:predict", 405),
    ("DELETE", "/v1/models/two", 405),
]


@pytest.mark.parametrize(("method", "path", "status"), REFUSED)
def test_anything_else_is_refused_and_never_forwarded(
    gateway: tuple[Gateway, RecordingProxy], method: str, path: str, status: int
) -> None:
    gw, proxy = gateway
    resp = gw.handle(Request(method, path, "", {}, b""))
    assert resp.status == status, resp.body
    assert proxy.forwarded == []
    assert b"<img" not in resp.body  # the answer is JSON; nothing echoed as markup


def test_the_query_string_is_not_forwarded(gateway: tuple[Gateway, RecordingProxy]) -> None:
    gw, proxy = gateway
    assert gw.handle(Request("GET", "/v1/models/two", "x=../../y", {}, b"")).status == 200
    assert proxy.forwarded == [("GET", "/v1/models/two")]


def test_a_token_still_guards_the_passthrough(gateway: tuple[Gateway, RecordingProxy]) -> None:
    proxy = RecordingProxy()
    gw = Gateway(GatewaySettings(NODE, token="gateway-token-0123456789"), object(), proxy)  # type: ignore[arg-type]
    assert gw.handle(Request("GET", "/v1/models/two", "", {}, b"")).status == 401
    ok: dict[str, Any] = {"authorization": "Bearer gateway-token-0123456789"}
    assert gw.handle(Request("GET", "/v1/models/two", "", ok, b"")).status == 200
    assert proxy.forwarded == [("GET", "/v1/models/two")]


def test_errors_echo_no_markup(gateway: tuple[Gateway, RecordingProxy]) -> None:
    gw, _proxy = gateway
    resp = gw.handle(Request("POST", "/model/%3Cimg%20src=x%3E/invocations", "", {}, b"{}"))
    assert resp.status == 404 and b"<" not in resp.body and b"\\u003cimg" in resp.body
