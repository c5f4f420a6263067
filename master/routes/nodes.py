"""Node heartbeats (node token) and the registry (read token)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify

from master.api import ApiError, body, log, need, state
from master.index import nodes_json
from master.telemetry import TELEMETRY_SOURCES, parse_beat
from modelsync.layout import is_node_id
from modelsync.reports import MAX_EVENTS_PER_BEAT, ROLES
from modelsync.telemetry import TelemetryError

bp = Blueprint("nodes", __name__)


@bp.post("/v1/nodes/heartbeat")
def heartbeat() -> Response:
    need("node")
    s = state()
    doc = body()
    node_id, role = doc.get("node_id"), doc.get("role")
    if not is_node_id(node_id):
        raise ApiError(400, "'node_id' must be 1-128 of [A-Za-z0-9_.-]")
    if role not in ROLES:
        raise ApiError(400, f"'role' must be one of {list(ROLES)}")
    status = doc.get("status") or {}
    events = doc.get("events") or []
    if not isinstance(status, dict) or not isinstance(events, list):
        raise ApiError(400, "'status' must be an object and 'events' a list")
    if len(events) > MAX_EVENTS_PER_BEAT:
        raise ApiError(400, f"at most {MAX_EVENTS_PER_BEAT} events per heartbeat")
    if not all(isinstance(e, dict) for e in events):
        raise ApiError(400, "every event must be an object")
    telemetry = []
    if doc.get("telemetry") is not None:
        if role not in TELEMETRY_SOURCES:
            raise ApiError(
                400, f"'telemetry': only {sorted(TELEMETRY_SOURCES)} heartbeats carry it"
            )
        try:
            telemetry = parse_beat(doc["telemetry"])
        except TelemetryError as exc:
            raise ApiError(400, f"'telemetry': {exc}") from None
    hb = doc.get("heartbeat_s", 10)
    heartbeat_s = float(hb) if isinstance(hb, int | float) and 0.5 <= hb <= 3600 else 10.0
    now = time.time()
    new, sync_seen = s.db.heartbeat(
        node_id,
        role,
        str(doc.get("hostname") or "")[:255],
        str(doc.get("version") or "")[:64],
        heartbeat_s,
        status,
        events,
        now,
    )
    s.metrics.heartbeats.labels(role).inc()
    if telemetry:
        s.telemetry.add(node_id, telemetry, now, TELEMETRY_SOURCES[role])
    if new:
        s.db.add_event("node", "node_registered", node_id=node_id, detail={"role": role})
        log.info("node_registered", node_id=node_id, role=role)
    requested = float(s.db.get_meta("sync_requested_at", "0") or 0)
    sync = requested > sync_seen
    if sync:
        s.db.ack_sync(node_id, role, now)
    return jsonify({"ok": True, "sync": sync, "server_time": now})


@bp.get("/v1/nodes")
def nodes() -> Response:
    need("read")
    now = time.time()
    return jsonify({"nodes": nodes_json(state().db.nodes(), now), "swarm": swarm_view()})


@bp.get("/v1/nodes/<node_id>")
def node(node_id: str) -> Response:
    need("read")
    rows = state().db.nodes(node_id)
    if not rows:
        raise ApiError(404, f"no node {node_id!r}")
    (node,) = nodes_json(rows, time.time())
    return jsonify({**node, "events": state().db.events(node=node_id, limit=50)})


def swarm_view() -> Any:
    s = state()
    if s.settings.docker == "off":
        return None
    from master.swarm import swarm_view as view

    try:
        return view(s.db.nodes(), time.time(), s.settings.docker_socket)
    except Exception as exc:  # the Docker socket is optional
        if s.settings.docker == "on":
            return {"error": str(exc)}
        return None
