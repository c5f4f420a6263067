"""The master against hostile input (issue #25): XSS probes answered escaped with the security
headers, reports checked name by name, per-node credentials, the session cookie, rate limits,
bounded signature reads."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import zlib
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from master_kit import ADMIN, NODE, READ, master_app

from master.api import STATE_KEY
from modelsync.dev.memstore import MemoryStore
from modelsync.nodeauth import node_token

XSS = "<img src=x onerror=alert(document.domain)>"


def raw(app: Flask, path: str, token: str | None = READ, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.test_client().open(path, headers=headers, **kw)


def beat(app: Flask, doc: dict[str, Any], token: str | None = None) -> Any:
    token = token or node_token(NODE, doc["node_id"])
    return raw(app, "/v1/nodes/heartbeat", token, method="POST", json=doc)


def secure_headers(resp: Any) -> None:
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


# --- escaping -------------------------------------------------------------------------------------
def test_a_markup_model_name_in_the_path_is_answered_escaped(app: Flask) -> None:
    resp = app.test_client().get("/models/" + XSS)  # not signed in
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    assert (
        b"<img" not in resp.data
        and b"&lt;img src=x onerror=alert(document.domain)&gt;" in resp.data
    )
    secure_headers(resp)


@pytest.mark.parametrize(
    "path",
    [f"/v1/models/{XSS}", f"/v1/nodes/{XSS}", f"/v1/models/m/metrics?since={XSS}", f"/{XSS}"],
)
def test_json_errors_echo_nothing_as_markup(app: Flask, path: str) -> None:
    resp = raw(app, path)
    assert 400 <= resp.status_code < 500 and resp.mimetype == "application/json"
    assert b"<" not in resp.data and b">" not in resp.data
    assert json.loads(resp.data)["error"]  # still JSON: the escapes decode
    secure_headers(resp)


def test_every_page_and_answer_carries_the_headers(app: Flask) -> None:
    for path in ("/login", "/healthz", "/v1/models", "/static/console.js"):
        secure_headers(raw(app, path))
    page = app.test_client().get("/login")
    assert b"<script>" not in page.data and b" on" + b"click=" not in page.data


# --- what nodes report ----------------------------------------------------------------------------
def test_reported_names_and_numbers_are_checked_and_dropped_with_one_event(app: Flask) -> None:
    doc = {
        "node_id": "n1",
        "role": "config_manager",
        "hostname": "<b>host</b>",
        "status": {
            "available": {XSS: [1], "good": [1, "2", True, 0, 2**70]},
            "available_since": {"good": {"1": math.inf, "x": 5}},
            "failed": {"good": {"1": "why " + XSS}},
            "states": {"good": {"1": "AVAILABLE"}, XSS: {"1": "AVAILABLE"}},
            "tfserving_up": "yes",
            "extra": {"anything": 1},
        },
        "telemetry": {"models": {XSS: {}}},
    }
    resp = beat(app, doc)
    assert resp.status_code == 200, resp.data
    node = raw(app, "/v1/nodes/n1").get_json()
    status = node["roles"]["config_manager"]["status"]
    assert status["available"] == {"good": [1]}
    assert status["available_since"] == {"good": {}}
    assert status["failed"] == {"good": {"1": "why " + XSS}}  # text, bounded; sent as JSON
    assert set(status) == {"available", "available_since", "failed", "states"}
    assert status["states"] == {"good": {"1": "AVAILABLE"}}
    assert node["hostname"] == ""
    models = [m["model"] for m in raw(app, "/v1/models").get_json()["models"]]
    assert models == ["good"]
    events = raw(app, "/v1/events?node=n1").get_json()["events"]
    dropped = [e for e in events if e["event"] == "report_dropped"]
    assert len(dropped) == 1
    text = " ".join(dropped[0]["detail"]["dropped"])
    for part in ("available", "is not a model name", "is not a time", "hostname", "extra"):
        assert part in text, text
    assert b"<img" not in raw(app, "/v1/events?node=n1").data  # escaped in the JSON
    # the same problems again: no second event (no flood), the report still kept
    assert beat(app, doc).status_code == 200
    events = raw(app, "/v1/events?node=n1").get_json()["events"]
    assert len([e for e in events if e["event"] == "report_dropped"]) == 1


def test_event_fields_are_checked(app: Flask) -> None:
    events = [
        {"event": "version_installed", "model": "m", "version": 1, "at": "yesterday"},
        {"event": "version_installed", "model": "m", "at": math.nan},
        {"event": "download_failed", "error": XSS, "at": 1700000000.5},
        {"event": XSS},
        {"event": "x", "model": XSS},
        {"event": "x", "bad key": 1},
        {"event": "x", "detail": "y" * 5000},
        "not an object",
    ]
    before = 1700000001.0
    resp = beat(app, {"node_id": "n2", "role": "puller", "events": events})
    assert resp.status_code == 200, resp.data  # a non-numeric `at` is no 500
    got = raw(app, "/v1/events?node=n2&limit=100").get_json()["events"]
    kept = [e for e in got if e["event"] in ("version_installed", "download_failed")]
    assert len(kept) == 3
    assert all(isinstance(e["at"], float) and e["at"] > before for e in kept if e["model"])
    assert [e["detail"]["error"] for e in kept if e["event"] == "download_failed"] == [XSS]
    (dropped,) = [e for e in got if e["event"] == "report_dropped"]
    assert len(dropped["detail"]["dropped"]) == 7
    assert b"<img" not in raw(app, "/v1/events?node=n2").data


def test_a_gateway_report_is_checked(app: Flask) -> None:
    status = {
        "url": "javascript:alert(1)",
        "auth": True,
        "models": {
            "demo": {
                "count": 3,
                "errors": -1,
                "by_status": {"200": 2, "abc": 1},
                "p50_ms": 1.5,
                "last": [
                    {"ts": 1.0, "model": "demo", "status": 200, "latency_ms": 2.0},
                    {"ts": 1.0, "model": XSS, "status": 999},
                ],
            },
            "": {"count": 1},
            XSS: {"count": 1},
        },
    }
    assert beat(app, {"node_id": "g1", "role": "gateway", "status": status}).status_code == 200
    got = raw(app, "/v1/nodes/g1").get_json()["roles"]["gateway"]["status"]
    assert "url" not in got and got["address"] == "127.0.0.1"
    assert list(got["models"]) == ["demo"]
    demo = got["models"]["demo"]
    assert demo["by_status"] == {"200": 2} and "errors" not in demo
    assert demo["last"] == [{"ts": 1.0, "model": "demo", "status": 200, "latency_ms": 2.0}]


def test_a_report_cannot_claim_the_address_the_master_saw(app: Flask) -> None:
    status = {"address": "10.0.0.1", "url": "http://127.0.0.1:8080"}
    assert beat(app, {"node_id": "g2", "role": "gateway", "status": status}).status_code == 200
    got = raw(app, "/v1/nodes/g2").get_json()["roles"]["gateway"]["status"]
    assert got["address"] == "127.0.0.1"


# --- per-node credentials ------------------------------------------------------------------------
def test_a_forged_report_for_another_node_is_refused(app: Flask) -> None:
    assert beat(app, {"node_id": "n1", "role": "puller", "status": {}}).status_code == 200
    forged = {"node_id": "n1", "role": "puller", "status": {"installed": {"m": [9]}}}
    resp = beat(app, forged, token=node_token(NODE, "n2"))
    assert resp.status_code == 403 and "n2" in resp.get_json()["error"]
    status = raw(app, "/v1/nodes/n1").get_json()["roles"]["puller"]["status"]
    assert status == {}  # untouched
    assert raw(app, "/v1/nodes/n2").status_code == 404
    # a token under another secret, a shared token, a token with its id edited: 401
    for token in (node_token("another-secret-0123456789", "n1"), NODE, "node.n1.AAAA"):
        assert beat(app, {"node_id": "n1", "role": "puller"}, token=token).status_code == 401


def test_a_node_token_reads_nothing(app: Flask) -> None:
    for path in ("/v1/models", "/v1/nodes", "/v1/events", "/v1/cluster"):
        assert raw(app, path, node_token(NODE, "n1")).status_code == 403
    resp = raw(app, "/v1/sync", node_token(NODE, "n1"), method="POST")
    assert resp.status_code == 403


# --- sessions -------------------------------------------------------------------------------------
def cookie_payload(client: Any) -> dict[str, Any]:
    """The session cookie's readable part (itsdangerous: [.]payload.time.signature)."""
    value = client.get_cookie("modelsync_session").value
    data = value.lstrip(".").split(".")[0]
    body = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    doc: dict[str, Any] = json.loads(zlib.decompress(body) if value.startswith(".") else body)
    return doc


def test_the_session_cookie_carries_no_hash_of_the_token(app: Flask) -> None:
    client = app.test_client()
    resp = client.post("/login", data={"token": READ, "next": "/"})
    assert resp.status_code == 303
    doc = cookie_payload(client)
    assert doc["kind"] == "read"
    digest = hashlib.sha256(READ.encode()).hexdigest()
    assert digest[:32] != doc["tok"] and digest[:16] not in json.dumps(doc)
    assert client.get("/").status_code == 200  # the session works
    assert app.secret_key != hashlib.sha256(ADMIN.encode()).digest()


def make_app(tmp_path: Path, name: str, **kw: Any) -> Flask:
    return master_app(tmp_path / f"{name}.sqlite3", **kw)


def test_the_session_key_is_random_or_the_setting(tmp_path: Path) -> None:
    a, b = make_app(tmp_path, "a"), make_app(tmp_path, "b")  # the same admin token
    again = make_app(tmp_path, "a")  # the same SQLite file: the same key (workers, restarts)
    key = "k" * 40
    c = make_app(tmp_path, "c", session_key=key)
    try:
        assert a.secret_key != b.secret_key and a.secret_key == again.secret_key
        assert c.secret_key == key.encode()
    finally:
        for app in (a, b, again, c):
            app.extensions[STATE_KEY].stop()


def test_rotating_a_token_ends_its_sessions(tmp_path: Path) -> None:
    first = make_app(tmp_path, "r")
    client = first.test_client()
    assert client.post("/login", data={"token": ADMIN}).status_code == 303
    assert client.get("/").status_code == 200
    cookie = client.get_cookie("modelsync_session").value
    first.extensions[STATE_KEY].stop()
    rotated = make_app(tmp_path, "r", admin_token="admin-token-rotated-0123")
    try:  # the same key (the same SQLite file), the same cookie, a new admin token
        other = rotated.test_client()
        other.set_cookie("modelsync_session", cookie)
        assert other.get("/").status_code == 302  # back to /login
    finally:
        rotated.extensions[STATE_KEY].stop()


@pytest.mark.parametrize(
    ("mode", "base", "headers", "secure"),
    [
        ("auto", "http://m", {}, False),
        ("auto", "https://m", {}, True),
        ("auto", "http://m", {"X-Forwarded-Proto": "https"}, True),
        ("true", "http://m", {}, True),
        ("false", "https://m", {}, False),
    ],
)
def test_the_cookie_is_secure_over_tls(
    tmp_path: Path, mode: str, base: str, headers: dict[str, str], secure: bool
) -> None:
    app = make_app(tmp_path, "s", session_secure=mode)
    try:
        resp = app.test_client().post(
            "/login", data={"token": ADMIN}, base_url=base, headers=headers
        )
        cookie = resp.headers["Set-Cookie"]
        assert ("; Secure" in cookie) is secure, cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    finally:
        app.extensions[STATE_KEY].stop()


# --- rate limits ----------------------------------------------------------------------------------
def test_wrong_bearer_tokens_are_limited_per_address(tmp_path: Path) -> None:
    app = make_app(tmp_path, "l", auth_failures=3, auth_window_s=60)
    try:
        client = app.test_client()
        here = {"REMOTE_ADDR": "10.1.1.1"}
        for _ in range(3):
            resp = client.get(
                "/v1/models",
                headers={"Authorization": "Bearer wrong-token-xxxxxxxx"},
                environ_base=here,
            )
            assert resp.status_code == 401
        for token in ("wrong-token-xxxxxxxx", READ):  # right or wrong: 429 now
            resp = client.get(
                "/v1/models", headers={"Authorization": f"Bearer {token}"}, environ_base=here
            )
            assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
        elsewhere = {"REMOTE_ADDR": "10.1.1.2"}
        resp = client.get(
            "/v1/models", headers={"Authorization": f"Bearer {READ}"}, environ_base=elsewhere
        )
        assert resp.status_code == 200
        # no token at all is no guess: never counted
        for _ in range(5):
            assert client.get("/v1/models", environ_base=elsewhere).status_code == 401
        resp = client.get(
            "/v1/models", headers={"Authorization": f"Bearer {READ}"}, environ_base=elsewhere
        )
        assert resp.status_code == 200
    finally:
        app.extensions[STATE_KEY].stop()


def test_sign_in_attempts_are_limited(tmp_path: Path) -> None:
    app = make_app(tmp_path, "li", auth_failures=2, auth_window_s=60)
    try:
        client = app.test_client()
        for _ in range(2):
            assert client.post("/login", data={"token": "nope-nope-nope-nope"}).status_code == 401
        resp = client.post("/login", data={"token": ADMIN})  # even the right one, for now
        assert resp.status_code == 429 and "too many" in resp.get_data(as_text=True)
        assert int(resp.headers["Retry-After"]) >= 1
    finally:
        app.extensions[STATE_KEY].stop()


def test_the_limiter_forgets_after_the_window() -> None:
    from master.auth import FailureLimiter

    now = [100.0]
    limiter = FailureLimiter(2, 10.0, clock=lambda: now[0])
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == pytest.approx(10.0)
    now[0] += 5
    assert limiter.retry_after("a") == pytest.approx(5.0)
    now[0] += 5.01
    assert limiter.retry_after("a") == 0.0
    assert limiter.retry_after("b") == 0.0


# --- the signature route --------------------------------------------------------------------------
def test_signatures_are_read_once_and_never_past_the_cap(
    app: Flask, memstore: MemoryStore, model_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from master.routes import scoring

    pb = (model_factory(2.0) / "saved_model.pb").read_bytes()
    memstore.write("models/m/1/saved_model.pb", pb)
    memstore.write("models/m/2/saved_model.pb", b"x" * 4096)
    reads = memstore.calls["read"]
    for _ in range(3):
        assert raw(app, "/v1/models/m/versions/1/signature").status_code == 200
    assert memstore.calls["read"] - reads == 1  # cached by (object, generation)
    monkeypatch.setattr(scoring, "MAX_SIGNATURE_BYTES", 1024)
    reads = memstore.calls["read"]
    doc = raw(app, "/v1/models/m/versions/2/signature").get_json()
    assert doc["signatures"] is None and "4096 bytes" in doc["reason"]
    assert memstore.calls["read"] == reads  # not read at all


ANA, BOB = "ana-token-0123456789abc", "bob-token-0123456789abc"


def test_rotating_one_persons_token_ends_only_their_sessions(tmp_path: Path) -> None:
    people = {"ana": ANA, "bob": BOB}
    first = make_app(tmp_path, "p", admin_tokens=people)
    cookies = {}
    for name, token in people.items():
        client = first.test_client()
        assert client.post("/login", data={"token": token}).status_code == 303
        page = client.get("/")
        assert page.status_code == 200 and f'id="actor">{name}<' in page.get_data(as_text=True)
        cookies[name] = client.get_cookie("modelsync_session").value
    first.extensions[STATE_KEY].stop()
    rotated = make_app(tmp_path, "p", admin_tokens={"ana": "ana-token-rotated-0123", "bob": BOB})
    try:
        for name, code in (("ana", 302), ("bob", 200)):
            client = rotated.test_client()
            client.set_cookie("modelsync_session", cookies[name])
            assert client.get("/").status_code == code, name
    finally:
        rotated.extensions[STATE_KEY].stop()


def test_a_persons_token_is_theirs_in_the_audit_log_and_a_wrong_one_counts(
    tmp_path: Path,
) -> None:
    app = make_app(tmp_path, "q", admin_tokens={"ana": ANA}, auth_failures=2)
    try:
        assert raw(app, "/v1/sync", ANA, method="POST").status_code == 200
        (entry,) = raw(app, "/v1/events?kind=audit", ADMIN).get_json()["events"]
        assert entry["actor"] == "ana" and entry["detail"]["actor"] == "ana"
        for _ in range(2):
            assert raw(app, "/v1/sync", ANA + "x", method="POST").status_code == 401
        assert raw(app, "/v1/sync", ANA, method="POST").status_code == 429  # the same limits
    finally:
        app.extensions[STATE_KEY].stop()
