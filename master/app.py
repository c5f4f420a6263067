"""The master: admin REST API, node registry, catalog writer, cluster view (Flask app factory)."""

from __future__ import annotations

import fcntl
import hmac
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from werkzeug.exceptions import HTTPException

from master import policy_ops
from master.catalog_writer import CatalogWriter
from master.cluster import all_models, model_view
from master.db import Database, NodeRow
from master.openapi import openapi_document
from master.settings import MasterSettings
from modelsync import __version__
from modelsync.layout import is_model_name
from modelsync.log import get_logger
from modelsync.policy import LABEL_RE, MAX_KEEP_VERSIONS, Policy
from modelsync.store import GCSStore, RemoteStore, StoreError

log = get_logger("master")
NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
ROLES = ("puller", "config_manager")
MAX_EVENTS_PER_BEAT = 1000


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MasterState:
    """Everything the request handlers share; built once per process."""

    def __init__(self, settings: MasterSettings, store: RemoteStore | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.db_path)
        self.store: RemoteStore = store or GCSStore(settings.store)
        self.writer = CatalogWriter(self.store, settings.store, settings.settle_s)
        self.policies = policy_ops.PolicyStore(self.store, settings.store.prefix)
        self.registry = CollectorRegistry()
        self.requests = Counter("modelsync_master_requests", "HTTP requests.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("modelsync_master_request_seconds", "HTTP request latency.",
                                 ["route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5))
        self.heartbeats = Counter("modelsync_master_heartbeats", "Heartbeats received.",
                                  ["role"], registry=self.registry)
        self.catalog_refreshes = Counter("modelsync_master_catalog_refreshes",
                                         "Catalog refreshes by outcome.", ["outcome"],
                                         registry=self.registry)
        self.catalog_seconds = Gauge("modelsync_master_catalog_refresh_seconds",
                                     "Duration of the last catalog refresh.",
                                     registry=self.registry)
        self.nodes_gauge = Gauge("modelsync_master_nodes", "Registered nodes by state.",
                                 ["state"], registry=self.registry)
        self._stop = threading.Event()
        self._lock_fh: Any = None
        self._policy_cache: tuple[float, Policy] | None = None

    # --- background jobs (one process of the master runs them) ---------------------------------
    def start_background(self) -> bool:
        lock_path = Path(str(self.settings.db_path) + ".lock")
        fh = open(lock_path, "a+")  # noqa: SIM115 - held for the life of the process
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._lock_fh = fh
        threading.Thread(target=self._loop, name="catalog", daemon=True).start()
        return True

    def _loop(self) -> None:
        last_trim = 0.0
        while not self._stop.is_set():
            self.refresh_catalog()
            if time.time() - last_trim > 60:
                last_trim = time.time()
                try:
                    self.db.trim_events(self.settings.events_max_rows,
                                        time.time() - self.settings.events_max_age_s)
                    self.db.forget_nodes(time.time() - self.settings.node_forget_s)
                except Exception:
                    log.exception("retention_failed")
            self._stop.wait(self.settings.catalog_s)

    def refresh_catalog(self) -> None:
        try:
            result = self.writer.refresh()
            self.catalog_refreshes.labels("ok").inc()
            self.catalog_seconds.set(result.seconds)
        except StoreError as exc:
            self.writer.last_error = str(exc)
            self.catalog_refreshes.labels("error").inc()
            log.warning("catalog_refresh_failed", error=str(exc))

    def stop(self) -> None:
        self._stop.set()

    # --- reads ---------------------------------------------------------------------------------
    def catalog(self) -> Any:
        """The current catalog: this process's own, or the one in the bucket."""
        if self.writer.current is None or (
                self.writer.last_ok_at is None and self._lock_fh is None):
            try:
                self.refresh_catalog_readonly()
            except StoreError as exc:
                raise ApiError(503, f"the bucket cannot be read: {exc}") from None
        return self.writer.current

    def refresh_catalog_readonly(self) -> None:
        from modelsync.catalog import catalog_object, parse_catalog

        info = self.store.stat(catalog_object(self.settings.store.prefix))
        if info is not None and info.generation != self.writer.generation:
            self.writer.current = parse_catalog(self.store.read(info.name,
                                                                generation=info.generation))
            self.writer.generation = info.generation

    def policy(self, max_age_s: float = 1.0) -> Policy:
        cached = self._policy_cache
        if cached is not None and time.monotonic() - cached[0] < max_age_s:
            return cached[1]
        try:
            policy, _gen = self.policies.read()
        except policy_ops.Conflict as exc:
            raise ApiError(409, str(exc)) from None
        except StoreError as exc:
            raise ApiError(503, f"the policy cannot be read: {exc}") from None
        self._policy_cache = (time.monotonic(), policy)
        return policy

    def complete_versions(self, model: str) -> list[int]:
        """Complete versions of ``model``: the catalog's, checked against a fresh listing of
        the model when the catalog does not know a version yet."""
        from modelsync.layout import SettleTracker, parse_listing

        base = f"{self.settings.store.prefix}/{model}/" if self.settings.store.prefix \
            else f"{model}/"
        try:
            listing = parse_listing(self.store.list_objects(base), self.settings.store.prefix,
                                    self.settings.store.marker)
        except StoreError as exc:
            raise ApiError(503, f"the bucket cannot be listed: {exc}") from None
        catalog = self.writer.current
        known = set(catalog.complete_versions(model)) if catalog else set()
        tracker = SettleTracker(float("inf"))  # without the catalog, trust only markers
        now = time.time()
        fresh = {v for v, rv in listing.models.get(model, {}).items()
                 if (v in known and rv.problem() is None) or tracker.is_complete(rv, now)}
        return sorted(fresh)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):].strip() or None
    return None


def _matches(token: str | None, expected: str | None) -> bool:
    return bool(token and expected and hmac.compare_digest(token.encode(), expected.encode()))


def create_app(settings: MasterSettings, store: RemoteStore | None = None,
               background: bool | None = None) -> Flask:
    state = MasterState(settings, store)
    if settings.run_background if background is None else background:
        state.start_background()
    app = Flask("modelsync-master")
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20

    def need(kind: str) -> None:
        token = _bearer()
        if token is None:
            raise ApiError(401, "missing bearer token")
        if kind == "node":
            ok = _matches(token, settings.node_token)
        elif kind == "admin":
            ok = _matches(token, settings.admin_token)
        else:
            ok = _matches(token, settings.admin_token) or _matches(token, settings.read_token)
        known = any(_matches(token, t) for t in (settings.admin_token, settings.read_token,
                                                  settings.node_token))
        if not ok:
            raise ApiError(403 if known else 401,
                           f"this route needs the {kind} token" if known else "invalid token")

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if data is None:
            if request.get_data():
                raise ApiError(400, "the request body is not valid JSON")
            return {}
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return data

    def version_arg(doc: dict[str, Any]) -> int:
        v = doc.get("version")
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < 2**63:
            raise ApiError(400, "'version' must be a positive integer")
        return v

    def check_model(model: str) -> None:
        if not is_model_name(model):
            raise ApiError(400, f"bad model name {model!r}")

    def audit(event: str, model: str | None, **detail: Any) -> None:
        state.db.add_event("audit", event, model=model,
                           detail={**detail, "request_id": g.get("request_id"),
                                   "remote": request.remote_addr})
        log.info(event, model=model, request_id=g.get("request_id"), **detail)

    def write_policy(model: str, event: str, change: Callable[[Policy], Policy],
                     **detail: Any) -> Response:
        try:
            policy, generation, written = state.policies.update(change)
        except policy_ops.Conflict as exc:
            raise ApiError(409, str(exc)) from None
        except policy_ops.Unprocessable as exc:
            raise ApiError(422, str(exc)) from None
        except StoreError as exc:
            raise ApiError(503, f"the policy cannot be written: {exc}") from None
        state._policy_cache = None
        audit(event, model, generation=generation, changed=written, **detail)
        mp = policy.for_model(model)
        return jsonify({"model": model, "policy": {
            "keep_versions": policy.keep_versions(model), "pin": mp.pin,
            "labels": dict(mp.labels), "disabled": mp.disabled},
            "generation": generation, "changed": written})

    # --- plumbing ------------------------------------------------------------------------------
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        rid = request.headers.get("X-Request-Id", "")
        g.request_id = rid if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", rid) else uuid.uuid4().hex

    @app.after_request
    def _finish(resp: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        state.requests.labels(request.method, route, str(resp.status_code)).inc()
        state.latency.labels(route).observe(seconds)
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        if route != "/v1/nodes/heartbeat" or resp.status_code >= 400:
            log.info("request", method=request.method, path=request.path,
                     status=resp.status_code, ms=round(seconds * 1000, 2),
                     request_id=g.get("request_id"))
        return resp

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response, int]:
        return jsonify({"error": exc.message, "request_id": g.get("request_id")}), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": exc.description, "request_id": g.get("request_id")}), \
            exc.code or 500

    # --- health, metrics, docs -----------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "alive", "version": __version__})

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        try:
            state.db.conn().execute("SELECT 1").fetchone()
            db_ok = True
        except Exception:
            db_ok = False
        writer = state.writer
        return jsonify({"ready": db_ok, "database": db_ok,
                        "catalog_last_ok_at": writer.last_ok_at,
                        "catalog_error": writer.last_error}), 200 if db_ok else 503

    @app.get("/metrics")
    def metrics() -> Response:
        now = time.time()
        counts = {"live": 0, "stale": 0}
        for n in state.db.nodes():
            counts[n.state(now)] += 1
        for k, v in counts.items():
            state.nodes_gauge.labels(k).set(v)
        return Response(generate_latest(state.registry), mimetype="text/plain; version=0.0.4")

    @app.get("/v1/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document())

    @app.get("/")
    def dashboard() -> Response:
        html = (Path(__file__).parent / "dashboard.html").read_text()
        return Response(html, mimetype="text/html")

    # --- nodes ---------------------------------------------------------------------------------
    @app.post("/v1/nodes/heartbeat")
    def heartbeat() -> Response:
        need("node")
        doc = body()
        node_id, role = doc.get("node_id"), doc.get("role")
        if not isinstance(node_id, str) or not NODE_ID_RE.match(node_id):
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
        hb = doc.get("heartbeat_s", 10)
        heartbeat_s = float(hb) if isinstance(hb, int | float) and 0.5 <= hb <= 3600 else 10.0
        now = time.time()
        new, sync_seen = state.db.heartbeat(
            node_id, role, str(doc.get("hostname") or "")[:255],
            str(doc.get("version") or "")[:64], heartbeat_s, status, events, now)
        state.heartbeats.labels(role).inc()
        if new:
            state.db.add_event("node", "node_registered", node_id=node_id,
                               detail={"role": role})
            log.info("node_registered", node_id=node_id, role=role)
        requested = float(state.db.get_meta("sync_requested_at", "0") or 0)
        sync = requested > sync_seen
        if sync:
            state.db.ack_sync(node_id, role, now)
        return jsonify({"ok": True, "sync": sync, "server_time": now})

    @app.get("/v1/nodes")
    def nodes() -> Response:
        need("read")
        now = time.time()
        return jsonify({"nodes": [n.to_json(now) for n in state.db.nodes()],
                        "swarm": swarm_view()})

    @app.get("/v1/nodes/<node_id>")
    def node(node_id: str) -> Response:
        need("read")
        rows = state.db.nodes(node_id)
        if not rows:
            raise ApiError(404, f"no node {node_id!r}")
        now = time.time()
        return jsonify({"node_id": node_id, "roles": {r.role: r.to_json(now) for r in rows},
                        "events": state.db.events(node=node_id, limit=50)})

    def swarm_view() -> Any:
        if settings.docker == "off":
            return None
        from master.swarm import swarm_view as view
        try:
            return view(state.db.nodes(), time.time())
        except Exception as exc:  # the Docker socket is optional
            if settings.docker == "on":
                return {"error": str(exc)}
            return None

    # --- models and cluster --------------------------------------------------------------------
    def view_inputs() -> tuple[Any, Policy, list[NodeRow]]:
        """What every view joins: the bucket's catalog, the policy, the nodes' reports."""
        return state.catalog(), state.policy(), state.db.nodes()

    @app.get("/v1/models")
    def models() -> Response:
        need("read")
        catalog, policy, rows = view_inputs()
        now = time.time()
        out = []
        for m in all_models(catalog, policy, rows):
            v = model_view(m, catalog, policy, rows, now)
            out.append({k: v[k] for k in ("model", "policy", "target_versions", "labels",
                                          "converged", "serving_nodes", "summary")}
                       | {"versions_in_bucket": [int(x) for x, d in v["versions"].items()
                                                 if d["in_bucket"]]})
        return jsonify({"models": out})

    @app.get("/v1/models/<model>")
    def model(model: str) -> Response:
        need("read")
        check_model(model)
        catalog, policy, rows = view_inputs()
        if model not in all_models(catalog, policy, rows):
            raise ApiError(404, f"no model {model!r} in the bucket, the policy or any node")
        return jsonify(model_view(model, catalog, policy, rows, time.time()))

    @app.get("/v1/cluster")
    def cluster() -> Response:
        need("read")
        catalog, policy, rows = view_inputs()
        now = time.time()
        out = {}
        for m in all_models(catalog, policy, rows):
            v = model_view(m, catalog, policy, rows, now)
            since = state.db.convergence(m, v["converged"], v["target_versions"], now)
            out[m] = {"target_versions": v["target_versions"], "labels": v["labels"],
                      "serving_nodes": v["serving_nodes"], "versions": v["summary"],
                      "converged": v["converged"], "since": since}
        live = sum(1 for n in rows if n.state(now) == "live")
        return jsonify({"models": out, "nodes": {"total": len(rows), "live": live,
                                                 "stale": len(rows) - live},
                        "catalog": {"listed_at": state.writer.last_ok_at,
                                    "error": state.writer.last_error}})

    # --- writes --------------------------------------------------------------------------------
    @app.post("/v1/models/<model>/pin")
    def pin(model: str) -> Response:
        need("admin")
        check_model(model)
        version = version_arg(body())
        try:
            change = policy_ops.pin(model, version, state.complete_versions(model))
        except policy_ops.Unprocessable as exc:
            raise ApiError(422, str(exc)) from None
        return write_policy(model, "model_pinned", change, version=version)

    @app.delete("/v1/models/<model>/pin")
    def unpin(model: str) -> Response:
        need("admin")
        check_model(model)
        return write_policy(model, "model_unpinned", policy_ops.unpin(model))

    @app.post("/v1/models/<model>/rollback")
    def rollback(model: str) -> Response:
        need("admin")
        check_model(model)
        return write_policy(model, "model_rolled_back",
                            policy_ops.rollback(model, state.complete_versions(model)))

    @app.put("/v1/models/<model>/labels/<label>")
    def put_label(model: str, label: str) -> Response:
        need("admin")
        check_model(model)
        if not LABEL_RE.match(label):
            raise ApiError(400, f"bad label {label!r}: a letter, then up to 63 of "
                                "[A-Za-z0-9_.-]")
        version = version_arg(body())
        try:
            change = policy_ops.set_label(model, label, version, state.complete_versions(model))
        except policy_ops.Unprocessable as exc:
            raise ApiError(422, str(exc)) from None
        return write_policy(model, "label_set", change, label=label, version=version)

    @app.delete("/v1/models/<model>/labels/<label>")
    def delete_label(model: str, label: str) -> Response:
        need("admin")
        check_model(model)
        return write_policy(model, "label_deleted", policy_ops.delete_label(model, label),
                            label=label)

    @app.put("/v1/models/<model>/policy")
    def put_policy(model: str) -> Response:
        need("admin")
        check_model(model)
        doc = body()
        unknown = set(doc) - {"keep_versions", "disabled"}
        if unknown:
            raise ApiError(400, f"unknown fields {sorted(unknown)}; allowed: keep_versions, "
                                "disabled")
        keep: Any = policy_ops.UNSET
        if "keep_versions" in doc:
            keep = doc["keep_versions"]
            if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int)
                                     or not 1 <= keep <= MAX_KEEP_VERSIONS):
                raise ApiError(400, f"'keep_versions' must be null or 1..{MAX_KEEP_VERSIONS}")
        disabled = doc.get("disabled")
        if disabled is not None and not isinstance(disabled, bool):
            raise ApiError(400, "'disabled' must be true or false")
        if keep is policy_ops.UNSET and disabled is None:
            raise ApiError(400, "give keep_versions and/or disabled")
        return write_policy(model, "model_policy_set",
                            policy_ops.set_model_policy(model, keep, disabled),
                            keep_versions=None if keep is policy_ops.UNSET else keep,
                            disabled=disabled)

    @app.post("/v1/sync")
    def sync() -> Response:
        need("admin")
        now = time.time()
        state.db.set_meta("sync_requested_at", repr(now))
        audit("sync_requested", None)
        return jsonify({"sync_requested_at": now})

    @app.get("/v1/events")
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
        return jsonify({"events": state.db.events(model=args.get("model"),
                                                  node=args.get("node"), since=since,
                                                  kind=args.get("kind"), limit=limit)})

    return app

