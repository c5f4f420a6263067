"""The watch (nodes hold ``GET /v1/watch`` and are answered when the catalog or the policy
changes: ``master.watch``) and the publishers' word that a version is in the bucket
(``POST /v1/catalog/versions``: the catalog takes it at once)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from master.api import ApiError, body, check_model, log, need, state, version_arg
from master.watch import Generations
from modelsync.layout import MAX_VERSION

bp = Blueprint("watch", __name__)
BUSY_RETRY_S = 30


def _generation(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) > MAX_VERSION:
        raise ApiError(400, f"'{name}': a generation (a non-negative integer), got {raw!r}")
    return int(raw)


def _wait_s(default: float) -> float:
    raw = request.args.get("wait_s")
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"'wait_s': a number of seconds, got {raw!r}") from None
    if not value >= 0:
        raise ApiError(400, f"'wait_s': a number of seconds (0 or more), got {raw!r}")
    return min(value, default)  # never held past MODELSYNC_WATCH_HOLD_S


@bp.get("/v1/watch")
def watch() -> Response:
    """Held until the master knows a catalog or policy newer than the generations the node
    saw (``catalog``, ``policy``), or ``wait_s`` passed. 503 when every watch slot is taken
    or the master stops: the node polls the bucket meanwhile."""
    need("node")
    s = state()
    seen = Generations(_generation("catalog"), _generation("policy"))
    wait_s = _wait_s(s.settings.watch_hold_s)
    if not s.watch.enter():
        s.metrics.watches.labels("refused").inc()
        retry = {"Retry-After": str(BUSY_RETRY_S)}
        raise ApiError(503, "no watch slot free (MODELSYNC_WATCH_MAX): poll the bucket", retry)
    try:
        answer = s.watch.wait(seen, wait_s)
    finally:
        s.watch.leave()
    if answer is None:
        s.metrics.watches.labels("stopping").inc()
        raise ApiError(503, "the master is stopping: poll the bucket", {"Retry-After": "1"})
    known, changed = answer
    s.metrics.watches.labels("changed" if changed else "nothing_new").inc()
    return jsonify({"catalog": known.catalog, "policy": known.policy, "changed": changed})


@bp.post("/v1/catalog/versions")
def version_published() -> Response:
    """A publisher wrote ``model``/``version`` (its marker last): list that version now and
    put it into the catalog (the bucket is the source of truth: nothing in the request is
    taken but the name). Publish or admin token."""
    need("publish")
    doc = body()
    model = doc.get("model")
    if not isinstance(model, str):
        raise ApiError(400, "'model': a model name is required")
    check_model(model)
    version = version_arg(doc)
    s = state()
    result = s.writer.refresh_version(model, version)
    log.info(
        "version_notified",
        model=model,
        version=version,
        complete=result.complete,
        written=result.written,
        generation=result.generation,
    )
    return jsonify(
        {
            "model": model,
            "version": version,
            "complete": result.complete,
            "reason": result.reason,
            "catalog_written": result.written,
            "catalog_generation": result.generation,
        }
    )
