"""The cluster view, sync requests and the event log."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from master.api import ApiError, audit, need, state
from master.cluster import all_models, model_summary, node_counts
from master.routes.models import view_inputs
from master.routes.telemetry import when
from master.telemetry import MINUTE, last_minute

bp = Blueprint("cluster", __name__)


@bp.get("/v1/cluster")
def cluster() -> Response:
    need("read")
    s = state()
    now = time.time()
    out = {}
    recent = s.telemetry.last_minute(now)
    with view_inputs() as (catalog, policy, fleet):
        for m in all_models(catalog, policy, fleet):
            v = model_summary(m, catalog, policy, fleet)
            observed = s.db.convergence(m, v["converged"], v["target_versions"], now)
            out[m] = {
                "target_versions": v["target_versions"],
                "labels": v["labels"],
                "serving_nodes": v["serving_nodes"],
                "versions": v["summary"],
                "converged": v["converged"],
                "problems": v["problems"],
                "last_minute": recent.get(m, last_minute(None, MINUTE)),
                # converged: since the nodes say the last of them got there
                "since": v["converged_since"] or observed,
            }
        nodes = node_counts(fleet)
    return jsonify(
        {
            "models": out,
            "nodes": nodes,
            "problems": s.problems(),
            "catalog": {"listed_at": s.writer.last_ok_at, "error": s.writer.last_error},
        }
    )


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
    except ValueError:
        raise ApiError(400, "'limit' must be an integer") from None
    since = when(args.get("since"), time.time(), "since")
    if not 1 <= limit <= 1000:
        raise ApiError(400, "'limit' must be 1..1000")
    return jsonify(
        {
            "events": state().db.events(
                model=args.get("model"),
                node=args.get("node"),
                since=since,
                kind=args.get("kind"),
                limit=limit,
            )
        }
    )
