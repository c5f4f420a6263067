"""The watch (nodes hold ``GET /v1/watch``, a stream told of every change of the catalog or the
policy: ``master.watch``) and the publishers' word that a version is in the bucket
(``POST /v1/catalog/versions``: the catalog takes it at once)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify

from master.api import ApiError, body, check_model, log, need, state, version_arg
from master.watch import Generations

bp = Blueprint("watch", __name__)
BUSY_RETRY_S = 30


def _line(known: Generations) -> bytes:
    return json.dumps({"catalog": known.catalog, "policy": known.policy}).encode() + b"\n"


@bp.get("/v1/watch")
def watch() -> Response:
    """A stream of JSON lines ``{"catalog": G, "policy": G}``: what the master knows now, then
    at each change and every ``MODELSYNC_WATCH_KEEPALIVE_S`` (``master.watch``). 503 when
    every watch slot is taken or the master stops: the node polls the bucket meanwhile."""
    need("node")
    s = state()
    if not s.watch.enter():
        s.metrics.watches.labels("refused").inc()
        retry = {"Retry-After": str(BUSY_RETRY_S)}
        raise ApiError(503, "no watch slot free (MODELSYNC_WATCH_MAX): poll the bucket", retry)
    s.metrics.watches.labels("held").inc()

    def lines() -> Iterator[bytes]:
        try:
            for known in s.watch.lines(s.settings.watch_keepalive_s):
                yield _line(known)
        finally:  # the node went away, or the master stops
            s.watch.leave()

    return Response(
        lines(),
        mimetype="application/x-ndjson",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


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
    s.containers.wake()  # a container model's version runs without waiting for a pass
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
