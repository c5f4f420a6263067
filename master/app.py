"""The master's Flask app factory: state, plumbing (request ids, metrics, errors), blueprints."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from master import policy_ops, security
from master.api import STATE_KEY, ApiError, json_error, log
from master.routes import (
    cluster,
    console,
    health,
    jobs,
    models,
    nodes,
    rollout,
    scoring,
    telemetry,
    upload,
    watch,
)
from master.settings import MasterSettings
from master.state import MasterState, Unavailable
from modelsync.store import RemoteStore, StoreError

ROOT = Path(__file__).parent  # templates/ and static/
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
QUIET_ROUTES = {"/v1/nodes/heartbeat", "/v1/watch"}  # logged only when they fail


def create_app(
    settings: MasterSettings, store: RemoteStore | None = None, background: bool | None = None
) -> Flask:
    state = MasterState(settings, store)
    if settings.run_background if background is None else background:
        state.start_background()
    app = Flask("modelsync-master", root_path=str(ROOT))
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.extensions[STATE_KEY] = state
    security.install(app, settings, state.db)
    for blueprint in (
        health.bp,
        nodes.bp,
        models.bp,
        cluster.bp,
        telemetry.bp,
        rollout.bp,
        scoring.bp,
        upload.bp,
        jobs.bp,
        watch.bp,
        console.bp,
    ):
        app.register_blueprint(blueprint)

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        rid = request.headers.get("X-Request-Id", "")
        g.request_id = rid if REQUEST_ID_RE.fullmatch(rid) else uuid.uuid4().hex

    @app.after_request
    def _finish(resp: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        state.metrics.requests.labels(request.method, route, str(resp.status_code)).inc()
        state.metrics.latency.labels(route).observe(seconds)
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        if route not in QUIET_ROUTES or resp.status_code >= 400:
            log.info(
                "request",
                method=request.method,
                path=request.path,
                status=resp.status_code,
                ms=round(seconds * 1000, 2),
                request_id=g.get("request_id"),
            )
        return resp

    app.register_error_handler(ApiError, lambda e: json_error(e.status, e.message, e.headers))
    app.register_error_handler(policy_ops.Conflict, lambda e: json_error(409, str(e)))
    app.register_error_handler(policy_ops.Unprocessable, lambda e: json_error(422, str(e)))
    app.register_error_handler(Unavailable, lambda e: json_error(503, str(e)))
    app.register_error_handler(
        StoreError, lambda e: json_error(503, f"the bucket cannot be reached: {e}")
    )
    app.register_error_handler(
        HTTPException, lambda e: json_error(e.code or 500, str(e.description))
    )
    return app
