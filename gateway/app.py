"""The gateway's routes: a request (method, path, headers, body) -> a response, with no socket
code (gateway/httpd.py serves it), so it can be driven in-process.

    POST /model/<name>[/<version>]/invocations   MLflow / Databricks scoring (a container
                                                 model: its /invocations, JSON or CSV)
    POST /api/v1/run-model, POST /predict        ML-Kraken
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>][/metadata]
    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict|classify|regress
                                                 TF Serving REST, passed through unchanged
                                                 (only these paths, by the name, version
                                                 and label rules: no '..', no %-escapes)
    GET  /v1/history  /openapi.json              (token, when one is set)
    GET  /healthz  /readyz  /metrics             (never a token)
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from gateway.containers import ContainerRoutes, kraken_body, kraken_results
from gateway.containers import content_type as container_content_type
from gateway.disabled import DisabledModels, disabled_message
from gateway.errors import MLFLOW_CODES, GatewayError, grpc_code
from gateway.history import Exchange, History
from gateway.metrics import GatewayMetrics
from gateway.openapi import openapi_document
from gateway.rest_proxy import RestProxy
from gateway.settings import GatewaySettings
from gateway.telemetry import GatewayTelemetry
from modelsync import convert, safejson
from modelsync.convert import BadInput
from modelsync.layout import NAME_PATTERN, VERSION_PATTERN, is_model_name, parse_version
from modelsync.log import get_logger
from modelsync.policy import LABEL_PATTERN
from modelsync.reports import HistorySummary
from modelsync.tensors import Signature
from modelsync.tfs import Attempt, TFServingClient

log = get_logger("gateway")

MLFLOW_RE = re.compile(r"/model/(?P<name>[^/]+)(?:/(?P<version>[^/]+))?/invocations\Z")
# TF Serving's REST API (model_servers/http_rest_api_handler.cc), by modelsync's own rules for a
# name, a version and a label: nothing else is ever forwarded
TFS_RE = re.compile(
    rf"/v1/models/(?P<name>{NAME_PATTERN})"
    rf"(?:/versions/(?P<version>{VERSION_PATTERN})|/labels/{LABEL_PATTERN})?"
    r"(?:(?P<meta>/metadata)|:(?P<verb>predict|classify|regress))?\Z"
)
KRAKEN_PATHS = ("/api/v1/run-model", "/predict")
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")
MAX_MODELS = 1000


@dataclass
class Request:
    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    too_large: bool = False


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Outcome:
    response: Response
    model: str = ""
    version: int | None = None
    error: str | None = None
    code: str | None = None  # TF Serving's gRPC status code name, when it answered one


def _json(doc: Any, status: int = 200) -> Response:
    """Strict JSON: a non-finite float is a bug here (``convert.jsonable`` writes them as text)."""
    return Response(status, safejson.dumps(doc, separators=(",", ":"), allow_nan=False).encode())


def _version(text: str | None) -> int | None:
    """A path's version (``layout.parse_version``); GatewayError 404 otherwise."""
    if text is None:
        return None
    version = parse_version(text)
    if version is None:
        raise GatewayError(404, f"version {text!r} does not exist (versions are positive integers)")
    return version


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        tfs: TFServingClient,
        proxy: RestProxy,
        history: History | None = None,
        metrics: GatewayMetrics | None = None,
        telemetry: GatewayTelemetry | None = None,
        containers: ContainerRoutes | None = None,
    ) -> None:
        self.settings = settings
        # container models on this node: learned from the master's heartbeat answers
        self.containers = containers or ContainerRoutes(settings.timeout_s)
        self.tfs = tfs
        self.proxy = proxy
        self.history = history or History(
            settings.history_per_model,
            settings.history_sample,
            settings.capture,
            settings.capture_bytes,
        )
        self.metrics = metrics or GatewayMetrics()
        self.telemetry = telemetry or GatewayTelemetry()  # per version, for the master
        self._bearer = f"Bearer {settings.token}".encode() if settings.token else None
        self.disabled = DisabledModels(settings.model_root)
        self._answered: set[str] = set()
        self._answered_lock = threading.Lock()

    # --- dispatch ------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        started = time.perf_counter()
        path = req.path
        if path in OPEN_PATHS:
            return self._open(req)
        conv = (
            "mlflow"
            if path.startswith("/model/")
            else "kraken"
            if path in KRAKEN_PATHS
            else "tfserving-rest"
            if path.startswith("/v1/models/")
            else ""
        )
        if self._bearer is not None and not self._authorized(req):
            resp = self._error(
                conv,
                GatewayError(401, "a valid 'Authorization: Bearer <token>' header is required"),
            )
            resp.headers["WWW-Authenticate"] = 'Bearer realm="modelsync-gateway"'
            return resp
        if not conv:
            return self._own(req)
        handler: Callable[[Request, float, Attempt], _Outcome] = (
            self._mlflow
            if conv == "mlflow"
            else self._kraken
            if conv == "kraken"
            else self._passthrough
        )
        attempt = Attempt()
        try:
            out = handler(req, started, attempt)
        except (BadInput, GatewayError) as exc:
            exc = self._explained(exc, self._model_of(conv, req))
            code = exc.code if isinstance(exc, GatewayError) else "INVALID_ARGUMENT"
            out = _Outcome(self._error(conv, exc), error=str(exc), code=code or None)
        except Exception as exc:  # a bug: a 500, logged with its traceback
            log.exception("request_failed", path=path, error=f"{type(exc).__name__}: {exc}")
            out = _Outcome(
                self._error(conv, GatewayError(500, f"internal error: {type(exc).__name__}")),
                error=f"{type(exc).__name__}: {exc}",
            )
        resp = out.response
        if out.version is not None:
            resp.headers["X-Model-Version"] = str(out.version)
        seconds = time.perf_counter() - started
        model = out.model or self._model_of(conv, req)
        label = self._label(model, resp.status)
        self.metrics.observe(label, conv, resp.status, seconds)
        if conv != "tfserving-rest" or req.method == "POST":  # inference, as TF Serving's
            self.telemetry.record(
                label,
                out.version if out.version is not None else attempt.version,
                out.code or grpc_code(resp.status),
                seconds,
            )
        self.history.record(
            Exchange(
                model=model,
                version=out.version,
                convention=conv,
                latency_ms=seconds * 1000,
                status=resp.status,
                error=out.error,
                request=req.body,
                response=resp.body,
            ),
            ring=label,
        )
        if resp.status >= 500:
            log.warning(
                "request_error", convention=conv, model=model, status=resp.status, error=out.error
            )
        return resp

    def _label(self, model: str, status: int) -> str:
        """The model's name once it has answered (at most MAX_MODELS names), else "": names
        from bad requests must not grow the metrics' label set or push models out of the
        history."""
        if model in self._answered:
            return model
        if status < 400 and model and len(self._answered) < MAX_MODELS:
            with self._answered_lock:
                self._answered.add(model)
            return model
        return ""

    def _authorized(self, req: Request) -> bool:
        got = req.headers.get("authorization", "").encode("utf-8", errors="replace")
        assert self._bearer is not None
        return hmac.compare_digest(got, self._bearer)

    @staticmethod
    def _model_of(conv: str, req: Request) -> str:
        m = (
            MLFLOW_RE.match(req.path)
            if conv == "mlflow"
            else TFS_RE.match(req.path)
            if conv == "tfserving-rest"
            else None
        )
        return unquote(m.group("name")) if m else ""

    def _explained(self, exc: BadInput | GatewayError, model: str) -> BadInput | GatewayError:
        """TF Serving's NOT_FOUND for a model the node's policy disables: say so."""
        if isinstance(exc, GatewayError) and exc.status == 404 and self.disabled.disabled(model):
            return GatewayError(404, disabled_message(model), exc.code)
        return exc

    def _error(self, conv: str, exc: BadInput | GatewayError) -> Response:
        status = exc.status if isinstance(exc, GatewayError) else 400
        message = exc.message if isinstance(exc, GatewayError) else str(exc)
        if conv == "mlflow":
            return _json(
                {"error_code": MLFLOW_CODES.get(status, "INTERNAL_ERROR"), "message": message},
                status,
            )
        return _json({"error": message}, status)

    # --- conventions ---------------------------------------------------------------------

    def _check_post(self, req: Request) -> None:
        if req.method != "POST":
            raise GatewayError(405, f"{req.method} is not allowed here; use POST")
        if req.too_large:
            raise GatewayError(413, f"the body is larger than {self.settings.max_body_bytes} bytes")
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "text/csv":
            raise GatewayError(415, "CSV bodies are not supported; send JSON")

    def _mlflow(self, req: Request, _started: float, attempt: Attempt) -> _Outcome:
        m = MLFLOW_RE.match(req.path)
        if m is None:
            raise GatewayError(
                404,
                f"no route {req.path}; use /model/<name>/invocations or "
                "/model/<name>/<version>/invocations",
            )
        name = unquote(m.group("name"))
        if not is_model_name(name):
            raise GatewayError(404, f"model {name!r} does not exist")
        version = _version(m.group("version"))
        hit = self.containers.resolve(name, version)
        if hit is not None:
            return self._container(req, name, hit, attempt)
        self._check_post(req)
        body = convert.parse_json(req.body)
        found: list[str] = []

        def build(sig: Signature) -> convert.Inputs:
            fmt, inputs = convert.mlflow_inputs(body, sig)
            found.append(fmt)
            return inputs

        query = parse_qs(req.query)
        signature = query.get("signature_name", [""])[0]
        answer = self.tfs.predict(name, version, build, signature, attempt)
        doc = convert.mlflow_predictions(answer.outputs, found[-1])
        return _Outcome(_json(doc), name, answer.version)

    def _kraken(self, req: Request, started: float, attempt: Attempt) -> _Outcome:
        self._check_post(req)
        kr = convert.kraken_request(convert.parse_json(req.body))
        try:
            hit = self.containers.resolve(kr.model, kr.version)
            if hit is not None:
                return self._container_kraken(kr, hit, started, attempt)
            answer = self.tfs.predict(
                kr.model,
                kr.version,
                lambda sig: convert.kraken_inputs(kr.model_data, sig),
                kr.signature,
                attempt,
            )
        except (BadInput, GatewayError) as exc:
            exc = self._explained(exc, kr.model)
            status = exc.status if isinstance(exc, GatewayError) else 400
            message = exc.message if isinstance(exc, GatewayError) else str(exc)
            code = exc.code if isinstance(exc, GatewayError) else "INVALID_ARGUMENT"
            resp = _json(
                {"error": message, "metaData": {"modelId": kr.model, "modelVersion": kr.version}},
                status,
            )
            return _Outcome(resp, kr.model, None, message, code or None)
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        doc = {
            "results": convert.kraken_results(answer.outputs),
            "metaData": {
                "modelId": kr.model,
                "modelVersion": answer.version,
                "latencyMs": latency_ms,
            },
        }
        return _Outcome(_json(doc), kr.model, answer.version)

    def _container(
        self, req: Request, name: str, hit: tuple[int, int], attempt: Attempt
    ) -> _Outcome:
        """MLflow's route to a container model: the body goes to its ``/invocations`` as it
        is (JSON or CSV), its answer comes back as it is."""
        if req.method != "POST":
            raise GatewayError(405, f"{req.method} is not allowed here; use POST")
        if req.too_large:
            raise GatewayError(413, f"the body is larger than {self.settings.max_body_bytes} bytes")
        ctype = container_content_type(req.headers)
        version, port = hit
        attempt.version = version  # an error is this version's too
        data, answer_type = self.containers.invoke(name, version, port, req.body, ctype)
        return _Outcome(Response(200, data, answer_type), name, version)

    def _container_kraken(
        self, kr: convert.KrakenRequest, hit: tuple[int, int], started: float, attempt: Attempt
    ) -> _Outcome:
        version, port = hit
        attempt.version = version
        data, _ctype = self.containers.invoke(
            kr.model, version, port, kraken_body(kr.model_data), "application/json"
        )
        doc = {
            "results": kraken_results(data),
            "metaData": {
                "modelId": kr.model,
                "modelVersion": version,
                "latencyMs": round((time.perf_counter() - started) * 1000, 3),
            },
        }
        return _Outcome(_json(doc), kr.model, version)

    def _passthrough(self, req: Request, _started: float, attempt: Attempt) -> _Outcome:
        m = TFS_RE.match(req.path)
        if m is None:
            raise GatewayError(
                404,
                "not a TF Serving REST path: /v1/models/<name>[/versions/<v>|/labels/<l>]"
                "[/metadata|:predict|:classify|:regress]",
            )
        want = "POST" if m.group("verb") else "GET"
        if req.method != want:
            raise GatewayError(405, f"{req.method} is not allowed here; use {want}")
        model = m.group("name")
        version = int(m.group("version")) if m.group("version") else None
        attempt.version = version  # TF Serving's REST answer names no version
        if req.too_large:
            raise GatewayError(413, f"the body is larger than {self.settings.max_body_bytes} bytes")
        target = req.path  # exactly the path matched; TF Serving's REST API takes no query
        status, body, ctype = self.proxy.forward(
            req.method, target, req.body, req.headers.get("content-type")
        )
        if status == 200 and version is None and m.group("meta"):
            try:
                version = int(json.loads(body)["model_spec"]["version"])
            except (ValueError, KeyError, TypeError):
                version = None
        error = None
        if status >= 400:
            try:
                error = str(json.loads(body).get("error"))
            except (ValueError, AttributeError):
                error = body[:200].decode("utf-8", errors="replace")
        return _Outcome(Response(status, body, ctype), model, version, error)

    # --- the gateway's own routes ----------------------------------------------------------

    def _open(self, req: Request) -> Response:
        if req.method != "GET":
            return _json({"error": f"{req.method} is not allowed here; use GET"}, 405)
        if req.path == "/healthz":
            return _json({"status": "alive"})
        if req.path == "/readyz":
            ok, detail = self.tfs.ready()
            return _json({"ready": ok, "tfserving": detail}, 200 if ok else 503)
        return Response(200, self.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")

    def _own(self, req: Request) -> Response:
        if req.path not in ("/openapi.json", "/v1/history"):
            return _json({"error": f"no route {req.path}"}, 404)
        if req.method != "GET":
            return _json({"error": f"{req.method} is not allowed here; use GET"}, 405)
        if req.path == "/openapi.json":
            return _json(openapi_document(self.tfs.known(), self.containers.models()))
        query = parse_qs(req.query)
        model = query.get("model", [None])[0]
        limit_text = query.get("limit", ["100"])[0]
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            return _json({"error": "limit: expected an integer from 1 to 1000"}, 400)
        return _json({"entries": self.history.entries(model or None, int(limit_text))})

    def summary(self) -> HistorySummary:
        """The request history's per-model summary (small, JSON-able: for a heartbeat)."""
        return self.history.summary()
