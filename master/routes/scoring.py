"""The scoring front door as the console sees it: recent requests per model (from the nodes'
gateway heartbeats), a version's signature (from the bucket), and the try-it action — the one
place the master calls a node: it sends one request through that node's gateway, on the
request of a signed-in person (read or admin token)."""

from __future__ import annotations

import time
from typing import Any

import requests
from flask import Blueprint, Response, jsonify

from master.api import ApiError, audit, body, check_model, need, state
from modelsync.layout import TARBALL_NAME, version_prefix
from modelsync.savedmodel import saved_model_signatures
from modelsync.store import NotFound

bp = Blueprint("scoring", __name__)
TRY_TIMEOUT_S = 30.0
MAX_RECENT = 100


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
    built for it), with an example body."""
    need("read")
    check_model(model)
    s = state()
    base = version_prefix(s.settings.store.prefix, model, version)
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        try:
            data = s.store.read(base + name)
        except NotFound:
            continue
        try:
            sigs = saved_model_signatures(name, data)
        except ValueError as exc:
            raise ApiError(409, f"{model} v{version}: {exc}") from None
        return jsonify(
            {
                "model": model,
                "version": version,
                "signatures": {
                    k: {
                        "inputs": {
                            i: {"dtype": t.dtype, "shape": t.shape} for i, t in sg.inputs.items()
                        },
                        "outputs": {
                            o: {"dtype": t.dtype, "shape": t.shape} for o, t in sg.outputs.items()
                        },
                        "example": {
                            "inputs": {i: example(t.dtype, t.shape) for i, t in sg.inputs.items()}
                        },
                    }
                    for k, sg in sigs.items()
                },
            }
        )
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
    if status is None or not isinstance(status.get("url"), str):
        raise ApiError(409, f"node {node!r} has no live gateway")
    path = f"/model/{model}/{version}/invocations" if version else f"/model/{model}/invocations"
    token = state().settings.gateway_token
    started = time.perf_counter()
    try:
        resp = requests.post(
            status["url"].rstrip("/") + path,
            json=payload,
            timeout=TRY_TIMEOUT_S,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
    except requests.RequestException as exc:
        raise ApiError(502, f"the gateway of {node} did not answer: {exc}") from None
    latency = round((time.perf_counter() - started) * 1000, 3)
    try:
        answer = resp.json()
    except ValueError:
        answer = {"text": resp.text[:2000]}
    audit("model_tried", model, node=node, status=resp.status_code, latency_ms=latency)
    return jsonify(
        {
            "node": node,
            "status": resp.status_code,
            "answer": answer,
            "version": resp.headers.get("X-Model-Version"),
            "latency_ms": latency,
        }
    )
