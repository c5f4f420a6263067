"""Health, metrics, the OpenAPI document and the dashboard (no token needed)."""

from __future__ import annotations

import time
from pathlib import Path

from flask import Blueprint, Response, jsonify
from prometheus_client import generate_latest

from master.api import state
from master.openapi import openapi_document
from modelsync import __version__

bp = Blueprint("health", __name__)
DASHBOARD = Path(__file__).parent.parent / "dashboard.html"


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "alive", "version": __version__})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    s = state()
    try:
        s.db.conn().execute("SELECT 1").fetchone()
        db_ok = True
    except Exception:
        db_ok = False
    return jsonify({"ready": db_ok, "database": db_ok,
                    "catalog_last_ok_at": s.writer.last_ok_at,
                    "catalog_error": s.writer.last_error}), 200 if db_ok else 503


@bp.get("/metrics")
def metrics() -> Response:
    s = state()
    for k, v in s.node_counts(time.time()).items():
        s.metrics.nodes.labels(k).set(v)
    return Response(generate_latest(s.metrics.registry), mimetype="text/plain; version=0.0.4")


@bp.get("/v1/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@bp.get("/")
def dashboard() -> Response:
    return Response(DASHBOARD.read_text(), mimetype="text/html")
