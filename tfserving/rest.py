"""TF Serving's REST API on --rest_api_port (Flask app, threaded server).

GET  /v1/models/<m>[/versions/<v>|/labels/<l>]           model status
GET  /v1/models/<m>[/versions/<v>|/labels/<l>]/metadata  signature defs
POST /v1/models/<m>[/versions/<v>|/labels/<l>]:predict   row ("instances") or columnar ("inputs")
Errors: {"error": "<message>"} with the HTTP status TF Serving maps the code to; any other
path under /v1/ is 400 "Malformed request: <METHOD> <path>" (http_rest_api_handler.cc).
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Flask, Response, request

from tfserving.config import MonitoringConfig
from tfserving.errors import ServingError
from tfserving.manager import ModelManager
from tfserving.metrics import Answering, ServerMetrics
from tfserving.servable import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    classify_rows,
    regress_values,
    run_examples,
)

_PATH_RE = re.compile(
    r"(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<meta>/metadata)|:(?P<verb>predict|classify|regress))?\Z"
)


def _json(doc: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(doc, separators=(",", ":")), status=status, mimetype="application/json"
    )


def _error(exc: ServingError) -> Response:
    return _json({"error": exc.message}, exc.http_status)


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def _encode(arr: np.ndarray) -> Any:
    if arr.dtype.kind in "SO":

        def enc(v: Any) -> Any:
            if isinstance(v, list):
                return [enc(x) for x in v]
            if isinstance(v, bytes):
                try:
                    return v.decode("utf-8")
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(v).decode()}
            return v

        return enc(arr.tolist())
    return arr.tolist()


def _as_array(value: Any, spec: Any, key: str) -> np.ndarray:
    import tensorflow as tf

    value = _decode_value(value)
    try:
        if spec.dtype == tf.string:
            return np.array(value, dtype=object)
        return np.array(value, dtype=spec.dtype.as_numpy_dtype)
    except (TypeError, ValueError) as exc:
        raise ServingError("INVALID_ARGUMENT", f"input {key!r}: {exc}") from None


def _body() -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"")
    except ValueError as exc:
        raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {exc}") from None
    if not isinstance(body, dict):
        raise ServingError("INVALID_ARGUMENT", "Request body must be a JSON object")
    return body


def _signature_name(body: dict[str, Any]) -> str:
    name = body.get("signature_name")
    if name is None or name == "":
        return DEFAULT_SIGNATURE
    if not isinstance(name, str):
        raise ServingError("INVALID_ARGUMENT", "'signature_name' must be a string")
    return name


def _feature(value: Any, key: str) -> Any:
    import tensorflow as tf

    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, bool) for v in values) or not values:
        raise ServingError("INVALID_ARGUMENT", f"feature {key!r}: unsupported value {value!r}")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    if all(isinstance(v, str | dict) for v in values):
        raw = [
            base64.b64decode(v["b64"])
            if isinstance(v, dict) and set(v) == {"b64"}
            else v.encode()
            if isinstance(v, str)
            else None
            for v in values
        ]
        if any(r is None for r in raw):
            raise ServingError("INVALID_ARGUMENT", f"feature {key!r}: unsupported value")
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=raw))
    raise ServingError("INVALID_ARGUMENT", f"feature {key!r}: mixed or unsupported value types")


def json_example(doc: Any, context: Any = None) -> Any:
    """A JSON object of features -> tf.train.Example (numbers, strings, {"b64": ...})."""
    import tensorflow as tf

    merged: dict[str, Any] = {}
    for part in (context or {}), doc:
        if not isinstance(part, dict):
            raise ServingError("INVALID_ARGUMENT", "each example must be a JSON object")
        merged.update(part)
    return tf.train.Example(
        features=tf.train.Features(feature={k: _feature(v, k) for k, v in merged.items()})
    )


def _inputs(body: dict[str, Any], sig: Any) -> tuple[dict[str, np.ndarray], bool]:
    """A predict body's input arrays, and whether it came as rows (``instances``) rather than
    columns (``inputs``): TF Serving's two request formats."""
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise ServingError(
            "INVALID_ARGUMENT",
            "Missing 'inputs' or 'instances' key"
            if not has_rows
            else "Not allowed to specify both 'inputs' and 'instances' keys",
        )
    keys = sorted(sig.inputs)
    inputs: dict[str, np.ndarray] = {}
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise ServingError("INVALID_ARGUMENT", "'instances' must be a non-empty list")
        if len(keys) == 1 and not (isinstance(rows[0], dict) and keys[0] in rows[0]):
            inputs[keys[0]] = _as_array(rows, sig.inputs[keys[0]], keys[0])
            return inputs, True
        for k in keys:
            if not all(isinstance(r, dict) and k in r for r in rows):
                raise ServingError("INVALID_ARGUMENT", f"instance is missing input {k!r}")
            inputs[k] = _as_array([r[k] for r in rows], sig.inputs[k], k)
        return inputs, True
    cols = body["inputs"]
    if isinstance(cols, dict):
        for k, v in cols.items():
            if k not in sig.inputs:
                raise ServingError("INVALID_ARGUMENT", f"unknown input {k!r}")
            inputs[k] = _as_array(v, sig.inputs[k], k)
    elif len(keys) == 1:
        inputs[keys[0]] = _as_array(cols, sig.inputs[keys[0]], keys[0])
    else:
        raise ServingError(
            "INVALID_ARGUMENT", "'inputs' must name each input of a multi-input signature"
        )
    return inputs, False


def _outputs(outputs: dict[str, np.ndarray], rows: int | None) -> dict[str, Any]:
    """A predict answer in the request's format: ``predictions`` (rows) or ``outputs``."""
    if rows is not None:
        if len(outputs) == 1:
            return {"predictions": _encode(next(iter(outputs.values())))}
        enc = {k: _encode(v) for k, v in outputs.items()}
        return {"predictions": [{k: enc[k][i] for k in enc} for i in range(rows)]}
    if len(outputs) == 1:
        return {"outputs": _encode(next(iter(outputs.values())))}
    return {"outputs": {k: _encode(v) for k, v in outputs.items()}}


@dataclass(frozen=True)
class Target:
    """The model a REST path names: by version, by label, or neither (the latest)."""

    name: str
    version: int | None = None
    label: str | None = None


class RestApi:
    """TF Serving's REST handlers over one model manager (``create_app`` routes to them)."""

    def __init__(self, manager: ModelManager, metrics: ServerMetrics) -> None:
        self.manager = manager
        self.metrics = metrics

    def status(self, t: Target) -> dict[str, Any]:
        # a label is not looked at: TF Serving's GetModelStatusImpl reads only the version
        return {
            "model_version_status": [
                {
                    "version": str(s.version),
                    "state": s.state.name,
                    "status": {"error_code": s.error_code, "error_message": s.error_message},
                }
                for s in self.manager.status(t.name, t.version)
            ]
        }

    def metadata(self, t: Target) -> dict[str, Any]:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        with self.manager.acquire(t.name, t.version, t.label) as (chosen, servable):
            sdm = get_model_metadata_pb2.SignatureDefMap()
            for key, sig in servable.meta_graph.signature_def.items():
                sdm.signature_def[key].CopyFrom(sig)
        return {
            "model_spec": {"name": t.name, "signature_name": "", "version": str(chosen)},
            "metadata": {
                "signature_def": json_format.MessageToDict(sdm, preserving_proto_field_name=True)
            },
        }

    def predict(self, t: Target, answering: Answering) -> dict[str, Any]:
        body = _body()
        sig_name = _signature_name(body)
        with self.manager.acquire(t.name, t.version, t.label) as (chosen, servable):
            answering.version = chosen
            inputs, as_rows = _inputs(body, servable.signature(sig_name))
            outputs = servable.run(sig_name, inputs)
        return _outputs(outputs, len(next(iter(inputs.values()))) if as_rows else None)

    def examples(self, verb: str, t: Target, answering: Answering) -> dict[str, Any]:
        """classify or regress ``tf.train.Example``s given as JSON objects."""
        body = _body()
        examples = body.get("examples")
        if not isinstance(examples, list) or not examples:
            raise ServingError("INVALID_ARGUMENT", "'examples' must be a non-empty list")
        context = body.get("context")
        serialized = [json_example(e, context).SerializeToString() for e in examples]
        method = CLASSIFY_METHOD if verb == "classify" else REGRESS_METHOD
        with self.manager.acquire(t.name, t.version, t.label) as (chosen, servable):
            answering.version = chosen
            outputs = run_examples(servable, _signature_name(body), method, serialized)
        if verb == "classify":
            return {
                "result": [[[lbl, score] for lbl, score in row] for row in classify_rows(outputs)]
            }
        return {"result": regress_values(outputs)}

    def dispatch(
        self, method: str, m: re.Match[str], answering: Answering
    ) -> dict[str, Any] | None:
        """The answer of a ``/v1/models/...`` request, None when no API has that shape;
        ``answering`` notes the version an inference request reached."""
        version = m.group("version")
        t = Target(m.group("name"), int(version) if version else None, m.group("label"))
        verb = m.group("verb")
        if method == "GET" and not verb:
            return self.metadata(t) if m.group("meta") else self.status(t)
        if method == "POST" and verb == "predict":
            return self.predict(t, answering)
        if method == "POST" and verb in ("classify", "regress"):
            return self.examples(verb, t, answering)
        return None

    def models(self, rest: str) -> Response:
        started = time.perf_counter()
        answering = Answering()

        def record(api: str, model: str, status: str) -> None:
            # as http_server.cc: every request counted, latency (µs) only when OK; API is the
            # URL's verb, "" for a GET; a malformed path counts as INVALID_ARGUMENT of model ""
            micros = int((time.perf_counter() - started) * 1_000_000)
            self.metrics.request(api, "REST", model, status, micros, answering.version)

        m = _PATH_RE.match(rest)
        name, api = (m.group("name"), m.group("verb") or "") if m else ("", "")
        try:
            doc = None if m is None else self.dispatch(request.method, m, answering)
        except ServingError as exc:
            record(api, name, exc.code)
            return _error(exc)
        except Exception:
            record(api, name, "UNKNOWN")
            raise
        if doc is None:
            record("", "", "INVALID_ARGUMENT")
            return _malformed(f"/v1/models/{rest}")
        record(api, name, "OK")
        return _json(doc)

    def not_an_api(self, rest: str) -> Response:
        self.metrics.request("", "REST", "", "INVALID_ARGUMENT", 0)
        return _malformed(f"/v1/{rest}")


def _malformed(path: str) -> Response:
    # as http_rest_api_handler.cc: a path under /v1/ that is no API is InvalidArgument
    # "Malformed request: <METHOD> <path>", which http_server.cc answers 400
    return _json({"error": f"Malformed request: {request.method} {path}"}, 400)


def create_app(
    manager: ModelManager, metrics: ServerMetrics, monitoring: MonitoringConfig | None = None
) -> Flask:
    app = Flask("tfserving")
    app.config["MAX_CONTENT_LENGTH"] = 256 * 2**20
    api = RestApi(manager, metrics)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    app.add_url_rule("/v1/<path:rest>", "not_an_api", api.not_an_api, methods=methods)
    app.add_url_rule("/v1/models/<path:rest>", "models", api.models, methods=methods)
    if monitoring and monitoring.prometheus_enable:
        app.add_url_rule(
            monitoring.prometheus_path,
            "prometheus",
            lambda: Response(metrics.render(), mimetype="text/plain; version=0.0.4"),
        )
    return app
