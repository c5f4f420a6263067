"""Health, metrics, the OpenAPI document and the dashboard (no token needed)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from master.api import state
from master.openapi import openapi_document
from modelsync import __version__

bp = Blueprint("health", __name__)


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
    return jsonify(
        {
            "ready": db_ok,
            "database": db_ok,
            "catalog_last_ok_at": s.writer.last_ok_at,
            "catalog_error": s.writer.last_error,
        }
    ), 200 if db_ok else 503


@bp.get("/metrics")
def metrics() -> Response:
    return Response(state().metrics.exposition(), mimetype="text/plain; version=0.0.4")


@bp.get("/v1/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())
