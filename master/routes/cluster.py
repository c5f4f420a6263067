"""The cluster view, sync requests and the event log."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from master.api import ApiError, audit, need, state
from master.cluster import all_models, model_view
from master.routes.models import view_inputs

bp = Blueprint("cluster", __name__)


@bp.get("/v1/cluster")
def cluster() -> Response:
    need("read")
    s = state()
    catalog, policy, rows = view_inputs()
    now = time.time()
    out = {}
    for m in all_models(catalog, policy, rows):
        v = model_view(m, catalog, policy, rows, now)
        since = s.db.convergence(m, v["converged"], v["target_versions"], now)
        out[m] = {"target_versions": v["target_versions"], "labels": v["labels"],
                  "serving_nodes": v["serving_nodes"], "versions": v["summary"],
                  "converged": v["converged"], "since": since}
    live = sum(1 for n in rows if n.state(now) == "live")
    return jsonify({"models": out, "nodes": {"total": len(rows), "live": live,
                                             "stale": len(rows) - live},
                    "catalog": {"listed_at": s.writer.last_ok_at,
                                "error": s.writer.last_error}})


@bp.post("/v1/sync")
def sync() -> Response:
    need("admin")
    now = time.time()
    state().db.set_meta("sync_requested_at", repr(now))
    audit("sync_requested", None)
    return jsonify({"sync_requested_at": now})


@bp.get("/v1/events")
def events() -> Response:
    need("read")
    args = request.args
    try:
        limit = int(args.get("limit", 100))
        since = float(args["since"]) if "since" in args else None
    except ValueError:
        raise ApiError(400, "'limit' must be an integer and 'since' a number") from None
    if not 1 <= limit <= 1000:
        raise ApiError(400, "'limit' must be 1..1000")
    return jsonify({"events": state().db.events(model=args.get("model"),
                                                node=args.get("node"), since=since,
                                                kind=args.get("kind"), limit=limit)})
