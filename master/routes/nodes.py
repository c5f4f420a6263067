"""Node heartbeats (each node with its own token) and the registry (read token)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from master import auth
from master.api import ApiError, body, log, need, state
from master.beat import BadBeat, ProblemLog, parse_beat
from master.index import nodes_json
from master.telemetry import TELEMETRY_SOURCES, Batch, parse_batch
from master.telemetry import parse_beat as parse_telemetry
from modelsync.telemetry import TelemetryError

bp = Blueprint("nodes", __name__)
PROBLEMS_KEY = "modelsync.report_problems"


@bp.post("/v1/nodes/heartbeat")
def heartbeat() -> Response:
    """A node daemon's report. Its token must be its own node's (``modelsync.nodeauth``);
    every name and number in it is checked (``master.beat``), what fails is dropped and
    recorded as one ``report_dropped`` event."""
    need("node")
    s = state()
    now = time.time()
    try:
        beat = parse_beat(body(), now)
    except BadBeat as exc:
        raise ApiError(400, str(exc)) from None
    owner = auth.guard().node_id()
    if owner != beat.node_id:
        raise ApiError(403, f"this token is node {owner!r}'s: it cannot report for another node")
    problems = list(beat.problems)
    telemetry = []
    batch: Batch | None = None
    if beat.telemetry is not None:
        if beat.role not in TELEMETRY_SOURCES:
            raise ApiError(
                400, f"'telemetry': only {sorted(TELEMETRY_SOURCES)} heartbeats carry it"
            )
        try:
            telemetry, batch = parse_telemetry(beat.telemetry), parse_batch(beat.telemetry)
        except TelemetryError as exc:
            raise ApiError(400, f"'telemetry': {exc}") from None
    status = beat.status
    if beat.role == "gateway":  # where try-it may reach this gateway: seen here, not reported
        status = {**status, "address": request.remote_addr or ""}
    new, sync_seen = s.db.heartbeat(
        beat.node_id,
        beat.role,
        beat.hostname,
        beat.version,
        beat.heartbeat_s,
        status,
        beat.events,
        now,
    )
    s.metrics.heartbeats.labels(beat.role).inc()
    if telemetry:
        s.telemetry.add(beat.node_id, telemetry, now, TELEMETRY_SOURCES[beat.role], batch)
    if new:
        s.db.add_event("node", "node_registered", node_id=beat.node_id, detail={"role": beat.role})
        log.info("node_registered", node_id=beat.node_id, role=beat.role)
    if problems and _problem_log().fresh(beat.node_id, beat.role, beat.problems, now):
        s.db.add_event(
            "node",
            "report_dropped",
            node_id=beat.node_id,
            detail={"role": beat.role, "dropped": problems},
        )
        log.warning("report_dropped", node_id=beat.node_id, role=beat.role, dropped=problems)
    requested = float(s.db.get_meta("sync_requested_at", "0") or 0)
    sync = requested > sync_seen
    if sync:
        s.db.ack_sync(beat.node_id, beat.role, now)
    answer: dict[str, Any] = {"ok": True, "sync": sync, "server_time": now}
    if beat.role == "gateway":  # where this node's container model versions listen
        try:
            answer["containers"] = s.containers.routes_for(beat.node_id, s.catalog(), s.policy())
        except Exception as exc:
            log.warning("container_routes_failed", node_id=beat.node_id, error=str(exc))
    return jsonify(answer)


def _problem_log() -> ProblemLog:
    log_: ProblemLog = current_app.extensions.setdefault(PROBLEMS_KEY, ProblemLog())
    return log_


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
