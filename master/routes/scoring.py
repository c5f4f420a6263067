"""The scoring front door as the console sees it: recent requests per model (from the nodes'
gateway heartbeats), a version's signature (from the bucket), and the try-it action — the one
place the master calls a node: it sends one request through that node's gateway, on the
request of a signed-in person (read or admin token).

Try-it reaches only a gateway the master names itself: the address the node's gateway
heartbeats come from, at ``MODELSYNC_GATEWAY_PORT`` — never a URL a node reports (a node whose
reported URL points anywhere else is refused, and nothing is sent). It follows no redirect,
uses no proxy or netrc from the environment, waits at most ``MODELSYNC_TRYIT_TIMEOUT_S`` and
reads at most ``MODELSYNC_TRYIT_MAX_BYTES`` of the answer; the gateway token goes only there.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Blueprint, Response, current_app, jsonify

from master.api import ApiError, audit, body, check_model, need, state
from master.settings import MasterSettings
from modelsync.layout import TARBALL_NAME, version_prefix
from modelsync.savedmodel import saved_model_signatures
from modelsync.store import NotFound

bp = Blueprint("scoring", __name__)
MAX_RECENT = 100
MAX_SIGNATURE_BYTES = 64 << 20  # a larger saved_model.pb is not read by the master
SIGNATURES_KEY = "modelsync.signatures"
SIGNATURES_KEPT = 64


class TryRefused(Exception):
    """Try-it will not send this request (nothing left the master)."""


class TryFailed(Exception):
    """The gateway did not answer usably (too slow, too large, unreachable)."""


def gateways() -> dict[str, dict[str, Any]]:
    """node id -> its gateway's last report (live ones)."""
    now = time.time()
    return {
        r.node_id: r.status
        for r in state().db.nodes_by_role("gateway")
        if r.state(now) == "live" and isinstance(r.status, dict)
    }


@bp.get("/v1/models/<model>/requests")
def recent_requests(model: str) -> Response:
    need("read")
    check_model(model)
    per_node: dict[str, Any] = {}
    recent: list[dict[str, Any]] = []
    for node, status in gateways().items():
        summary = (status.get("models") or {}).get(model)
        if not isinstance(summary, dict):
            continue
        per_node[node] = {
            k: summary.get(k) for k in ("count", "errors", "by_status", "p50_ms", "p99_ms", "ring")
        }
        for entry in summary.get("last") or []:
            if isinstance(entry, dict):
                recent.append({**entry, "node": node})
    recent.sort(key=lambda e: e.get("ts") or 0, reverse=True)
    return jsonify({"model": model, "nodes": per_node, "recent": recent[:MAX_RECENT]})


@bp.get("/v1/models/<model>/versions/<int:version>/signature")
def signature(model: str, version: int) -> Response:
    """The version's signatures, read from its saved_model.pb in the bucket (so a form can be
    built for it), with an example body. Read once per object generation (kept in memory), and
    never past ``MAX_SIGNATURE_BYTES``."""
    need("read")
    check_model(model)
    s = state()
    base = version_prefix(s.settings.store.prefix, model, version)
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        info = s.store.stat(base + name)
        if info is None:
            continue
        if info.size > MAX_SIGNATURE_BYTES:
            return jsonify(
                {
                    "model": model,
                    "version": version,
                    "signatures": None,
                    "reason": f"its {name} is {info.size} bytes, more than the master reads "
                    f"({MAX_SIGNATURE_BYTES})",
                }
            )
        cache = _signature_cache()
        key = (base + name, info.generation)
        doc = cache.get(key)
        if doc is None:
            try:
                data = s.store.read(base + name, info.generation)
            except NotFound:
                continue
            doc = _signature_doc(model, version, name, data)
            cache.put(key, doc)
        return jsonify(doc)
    if s.store.stat(base + TARBALL_NAME) is not None:  # read only by the nodes, never here
        return jsonify(
            {
                "model": model,
                "version": version,
                "signatures": None,
                "reason": f"v{version} is published as one {TARBALL_NAME}: its "
                "signature is not read from the bucket",
            }
        )
    raise ApiError(404, f"{model} v{version} has no saved_model.pb in the bucket (no such version)")


def _signature_doc(model: str, version: int, name: str, data: bytes) -> dict[str, Any]:
    try:
        sigs = saved_model_signatures(name, data)
    except ValueError as exc:
        raise ApiError(409, f"{model} v{version}: {exc}") from None
    return {
        "model": model,
        "version": version,
        "signatures": {
            k: {
                "inputs": {i: {"dtype": t.dtype, "shape": t.shape} for i, t in sg.inputs.items()},
                "outputs": {o: {"dtype": t.dtype, "shape": t.shape} for o, t in sg.outputs.items()},
                "example": {"inputs": {i: example(t.dtype, t.shape) for i, t in sg.inputs.items()}},
            }
            for k, sg in sigs.items()
        },
    }


class SignatureCache:
    """The last ``SIGNATURES_KEPT`` signature documents, by (object name, generation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: collections.OrderedDict[tuple[str, int], dict[str, Any]] = (
            collections.OrderedDict()
        )

    def get(self, key: tuple[str, int]) -> dict[str, Any] | None:
        with self._lock:
            doc = self._docs.get(key)
            if doc is not None:
                self._docs.move_to_end(key)
            return doc

    def put(self, key: tuple[str, int], doc: dict[str, Any]) -> None:
        with self._lock:
            self._docs[key] = doc
            while len(self._docs) > SIGNATURES_KEPT:
                self._docs.popitem(last=False)


def _signature_cache() -> SignatureCache:
    cache: SignatureCache = current_app.extensions.setdefault(SIGNATURES_KEY, SignatureCache())
    return cache


def example(dtype: str, shape: tuple[int, ...] | None) -> Any:
    value: Any = (
        ""
        if dtype == "string"
        else False
        if dtype == "bool"
        else 0.0
        if dtype.startswith("float")
        else 0
    )
    for dim in reversed((shape or (1,))[1:]):
        value = [value] * (dim if dim > 0 else 1)
    return [value]  # one row


def gateway_target(settings: MasterSettings, node: str, status: dict[str, Any]) -> str:
    """The URL of ``node``'s gateway as the master names it: the address its heartbeats came
    from, and the configured gateway port. TryRefused if the node reports its gateway anywhere
    else (another port or host, another scheme) or the address is no IP address."""
    try:
        address = ipaddress.ip_address(str(status.get("address") or ""))
    except ValueError:
        raise TryRefused(f"the master has no address of {node}'s gateway") from None
    host = f"[{address}]" if address.version == 6 else str(address)
    target = f"http://{host}:{settings.gateway_port}"
    reported = status.get("url")
    if reported is not None:
        parts = urlsplit(str(reported))
        try:
            port = parts.port
        except ValueError:
            port = None
        names = {str(address), node, "localhost" if address.is_loopback else str(address)}
        if parts.scheme != "http" or port != settings.gateway_port or parts.hostname not in names:
            raise TryRefused(
                f"{node} reports its gateway at {str(reported)[:200]}, but the master sends "
                f"try-it only to {target} (the node's address and MODELSYNC_GATEWAY_PORT): "
                "nothing was sent"
            )
    return target


def send_once(
    settings: MasterSettings, url: str, payload: dict[str, Any]
) -> tuple[int, bytes, str | None]:
    """One POST, no redirect followed, no environment proxy; (status, body, X-Model-Version).
    TryFailed past the deadline or the size cap."""
    token = settings.gateway_token
    deadline = time.monotonic() + settings.tryit_timeout_s
    with requests.Session() as session:
        session.trust_env = False  # no proxy, no netrc: the token goes to ``url`` only
        try:
            resp = session.post(
                url,
                json=payload,
                timeout=(min(3.0, settings.tryit_timeout_s), settings.tryit_timeout_s),
                headers={"Authorization": f"Bearer {token}"} if token else {},
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise TryFailed(f"did not answer ({type(exc).__name__})") from None
        with resp:
            data = bytearray()
            try:
                for chunk in resp.iter_content(65536):
                    data += chunk
                    if len(data) > settings.tryit_max_bytes:
                        raise TryFailed(
                            f"answered more than {settings.tryit_max_bytes} bytes (not read)"
                        )
                    if time.monotonic() > deadline:
                        raise TryFailed(f"took more than {settings.tryit_timeout_s:g} s")
            except requests.RequestException as exc:
                raise TryFailed(f"broke off its answer ({type(exc).__name__})") from None
            return resp.status_code, bytes(data), resp.headers.get("X-Model-Version")


@bp.post("/v1/models/<model>/try")
def try_it(model: str) -> Response:
    """One request through a node's gateway: ``{"node": id, "body": {...MLflow body...},
    "version": optional}`` -> the answer, the version that answered and the latency."""
    need("read")
    check_model(model)
    doc = body()
    node, payload, version = doc.get("node"), doc.get("body"), doc.get("version")
    if not isinstance(node, str) or not isinstance(payload, dict):
        raise ApiError(400, "give 'node' (a node id) and 'body' (a JSON object)")
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or version < 1
    ):
        raise ApiError(400, "'version' must be a positive integer")
    status = gateways().get(node)
    if status is None:
        raise ApiError(409, f"node {node[:128]!r} has no live gateway")
    settings = state().settings
    try:
        target = gateway_target(settings, node, status)
    except TryRefused as exc:
        audit("model_try_refused", model, node=node, reason=str(exc))
        raise ApiError(409, str(exc)) from None
    path = f"/model/{model}/{version}/invocations" if version else f"/model/{model}/invocations"
    started = time.perf_counter()
    try:
        code, data, answered = send_once(settings, target + path, payload)
    except TryFailed as exc:
        raise ApiError(502, f"the gateway of {node} {exc}") from None
    latency = round((time.perf_counter() - started) * 1000, 3)
    try:
        answer = json_answer(data)
    except ValueError:
        answer = {"text": data[:2000].decode("utf-8", errors="replace")}
    if 300 <= code < 400:
        answer = {"error": f"the gateway answered a redirect ({code}); it is not followed"}
    audit("model_tried", model, node=node, status=code, latency_ms=latency)
    return jsonify(
        {
            "node": node,
            "status": code,
            "answer": answer,
            "version": answered if answered and answered.isdigit() else None,
            "latency_ms": latency,
        }
    )


def json_answer(data: bytes) -> Any:
    """The gateway's JSON (ValueError if it is none, or has NaN or infinities)."""
    return json.loads(data, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
