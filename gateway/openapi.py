"""The OpenAPI 3 document of the gateway (``GET /openapi.json``).

Besides the generic routes, every model the gateway has served (its signature is cached) gets
its own ``/model/<name>/invocations`` operation whose body schema names that signature's inputs
with their dtypes and shapes, with an example, so that a generator such as schemathesis sends
requests that reach the model. Those schemas are a little tighter than what the gateway accepts,
to keep generated requests valid: rows of a DataFrame use one value type that fits every column
(integers, when an integer input sits beside a float one), and the columnar formats of a
multi-input signature carry exactly 2 rows (inputs of different lengths are TF Serving's 400).

A container model this node routes to (``Containers``: model -> its versions) gets its own
operations too: ``/model/<name>[/<version>]/invocations`` taking JSON or CSV, passed to the
container's ``/invocations`` as sent (the serving contract of README "Container models").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from modelsync import layout
from modelsync.convert import MLFLOW_FORMATS, NUMERIC
from modelsync.layout import json_pattern
from modelsync.openapi import Paths, document, error_response, metrics_path, operation, param
from modelsync.tensors import Signature, TensorSpec

NAME_PATTERN = json_pattern(layout.NAME_PATTERN)
MAX_ROWS = 5
Known = Mapping[str, tuple[int, Signature]]  # model -> (newest version seen, signature)
Examples = Callable[[str], dict[str, Any]]  # a path parameter with the example filled in
Containers = Mapping[str, list[int]]  # container model -> its versions routed on this node
_MLFLOW_ERR = error_response("MlflowError")
_ANY_JSON = {"description": "OK", "content": {"application/json": {"schema": {}}}}


def _elem(dtype: str) -> dict[str, Any]:
    if dtype == "bool":
        return {"type": "boolean"}
    if dtype == "string":
        return {"type": "string", "maxLength": 64}
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(np.dtype(dtype))
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    return {"type": "number", "minimum": -1e6, "maximum": 1e6}


def _nest(schema: dict[str, Any], dims: tuple[int, ...]) -> dict[str, Any]:
    for d in reversed(dims):
        size = {"minItems": d, "maxItems": d} if d >= 0 else {"minItems": 1, "maxItems": 3}
        schema = {"type": "array", "items": schema, **size}
    return schema


def _cell(spec: TensorSpec) -> dict[str, Any]:
    """One row's value of an input (its shape without the first dimension)."""
    if spec.shape is None:
        return {}
    return _nest(_elem(spec.dtype), spec.shape[1:])


def _column(spec: TensorSpec, rows: int | None = None) -> dict[str, Any]:
    if spec.shape is None:
        return {}
    if not spec.shape:
        return _elem(spec.dtype)
    first = spec.shape[0] if spec.shape[0] >= 0 else rows
    size = (
        {"minItems": first, "maxItems": first}
        if first is not None
        else {"minItems": 1, "maxItems": MAX_ROWS}
    )
    return {"type": "array", "items": _cell(spec), **size}


def _columns(sig: Signature) -> dict[str, Any]:
    rows = 2 if len(sig.inputs) > 1 else None
    return _obj({k: _column(v, rows) for k, v in sig.inputs.items()})


def _common_cell(sig: Signature) -> dict[str, Any]:
    """One schema for a value of any column of a DataFrame row."""
    cells = [_cell(s) for s in sig.inputs.values()]
    if all(c == cells[0] for c in cells):
        return cells[0]
    if all(
        s.shape is not None and len(s.shape) == 1 and s.dtype in NUMERIC
        for s in sig.inputs.values()
    ):
        ints = [c for c in cells if c["type"] == "integer"]
        if not ints:
            return {"type": "number", "minimum": -1e6, "maximum": 1e6}
        return {
            "type": "integer",
            "minimum": max(c["minimum"] for c in ints),
            "maximum": min(c["maximum"] for c in ints),
        }
    return {"anyOf": cells}


def _example_value(spec: TensorSpec, first: int) -> Any:
    value: Any = {"bool": True, "string": "a"}.get(
        spec.dtype, 1 if spec.dtype.startswith(("int", "uint")) else 1.5
    )
    dims = list(spec.shape or ())
    for i, d in reversed(list(enumerate(dims))):
        value = [value] * (first if i == 0 and d < 0 else max(d, 1))
    return value


def example(sig: Signature) -> dict[str, Any]:
    """A valid ``inputs`` body of 2 rows."""
    return {"inputs": {k: _example_value(v, 2) for k, v in sig.inputs.items()}}


def _obj(props: Mapping[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(props),
        "required": required or list(props),
        "additionalProperties": False,
    }


def _rows(sig: Signature) -> dict[str, Any]:
    if len(sig.inputs) == 1:
        (spec,) = sig.inputs.values()
        item = _cell(spec)
    else:
        item = _obj({k: _cell(v) for k, v in sig.inputs.items()})
    return {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_ROWS}


def mlflow_body(sig: Signature | None) -> dict[str, Any]:
    """Exactly one of MLflow's four formats (and optional ``params``)."""
    if sig is None:
        formats: dict[str, Any] = {
            "dataframe_split": {
                "type": "object",
                "required": ["columns", "data"],
                "properties": {
                    "columns": {"type": "array", "items": {"type": "string"}},
                    "data": {"type": "array", "items": {"type": "array"}},
                    "index": {"type": "array"},
                },
            },
            "dataframe_records": {"type": "array", "items": {"type": "object"}},
            "instances": {"type": "array"},
            "inputs": {},
        }
    else:
        names = list(sig.inputs)
        formats = {
            "dataframe_split": _obj(
                {
                    "columns": {
                        "type": "array",
                        "items": {"type": "string", "enum": names},
                        "minItems": len(names),
                        "maxItems": len(names),
                        "uniqueItems": True,
                    },
                    "data": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_ROWS,
                        "items": {
                            "type": "array",
                            "minItems": len(names),
                            "maxItems": len(names),
                            "items": _common_cell(sig),
                        },
                    },
                }
            ),
            "dataframe_records": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_ROWS,
                "items": _obj({k: _cell(v) for k, v in sig.inputs.items()}),
            },
            "instances": _rows(sig),
            "inputs": _columns(sig),
        }
    return {
        "oneOf": [
            _obj({fmt: formats[fmt], "params": {"type": "object"}}, [fmt]) for fmt in MLFLOW_FORMATS
        ]
    }


def kraken_body(model: str | None, sig: Signature | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "modelId": {"type": "string", "pattern": NAME_PATTERN}
        if model is None
        else {"type": "string", "enum": [model]},
        "modelVersion": {"type": "integer", "minimum": 1, "maximum": layout.MAX_VERSION},
        "signatureName": {"type": "string"},
    }
    data: dict[str, Any] = {} if sig is None else {"oneOf": [_columns(sig), _rows(sig)]}
    return _obj({"modelData": data, "metaData": _obj(meta, ["modelId"])})


def _op(
    summary: str,
    *,
    secured: bool = True,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    errors: Mapping[str, str] | None = None,
    mlflow: bool = False,
    body_example: Any = None,
) -> dict[str, Any]:
    codes = {**({"401": "no or a wrong token"} if secured else {}), **(errors or {})}
    return operation(
        summary,
        "bearerAuth" if secured else None,
        codes,
        error=_MLFLOW_ERR if mlflow else None,
        ok=_ANY_JSON,
        body=body,
        body_example=body_example,
        params=params,
    )


NAME_SCHEMA = {"type": "string", "pattern": NAME_PATTERN}
VERSION_SCHEMA = {"type": "integer", "minimum": 1, "maximum": layout.MAX_VERSION}
SIGNATURE = param("signature_name", {"type": "string", "maxLength": 64}, "query", False)
SCORING_ERRORS = {
    "400": "bad input (the message names the input)",
    "404": "unknown model or version",
    "413": "body too large",
    "503": "TF Serving is unavailable",
}


def _plumbing_paths() -> Paths:
    limit = {"type": "integer", "minimum": 1, "maximum": 1000}
    history = [
        param("model", {"type": "string", "maxLength": 128}, "query", False),
        param("limit", limit, "query", False),
    ]
    return {
        "/healthz": {"get": _op("The process is alive", secured=False)},
        "/readyz": {
            "get": _op("TF Serving answers gRPC", secured=False, errors={"503": "not ready"})
        },
        **metrics_path(),
        "/openapi.json": {"get": _op("This document")},
        "/v1/history": {
            "get": _op("Recent requests, newest first", params=history, errors={"400": "bad limit"})
        },
    }


def _mlflow_paths(known: Known, example_of: Examples) -> Paths:
    model_p, version_p = example_of("name"), example_of("version")
    paths: Paths = {
        "/model/{name}/invocations": {
            "post": _op(
                "MLflow scoring on the version TF Serving serves as latest (a container "
                "model: its newest version that answers /ping)",
                mlflow=True,
                body=mlflow_body(None),
                params=[model_p, SIGNATURE],
                errors=SCORING_ERRORS,
            )
        },
        "/model/{name}/{version}/invocations": {
            "post": _op(
                "MLflow scoring on one version",
                mlflow=True,
                body=mlflow_body(None),
                params=[model_p, version_p, SIGNATURE],
                errors=SCORING_ERRORS,
            )
        },
    }
    for model, (_version, sig) in known.items():
        paths[f"/model/{model}/invocations"] = {
            "post": _op(
                f"MLflow scoring of {model} (serving_default)",
                mlflow=True,
                body=mlflow_body(sig),
                errors=SCORING_ERRORS,
                body_example=example(sig),
            )
        }
    return paths


CONTAINER_ERRORS = {
    "400": "the container's own 4xx, with its message, in the same error shape",
    "404": "unknown model, or a version this node does not serve",
    "413": "body too large",
    "415": "neither JSON nor CSV",
    "502": "the container failed (its 5xx)",
    "503": "nothing answers for the model on this node",
    "504": "no answer within MODELSYNC_GATEWAY_TIMEOUT_S",
}


def _container_paths(containers: Containers) -> Paths:
    """Each container model's operations: its body is whatever its image takes (the contract:
    JSON, or CSV with ``Content-Type: text/csv``), so the schemas are open."""
    paths: Paths = {}
    body = {
        "required": True,
        "content": {
            "application/json": {"schema": {}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
    for model, versions in sorted(containers.items()):
        listed = ", ".join(str(v) for v in sorted(versions))
        for path, what in (
            (f"/model/{model}/invocations", f"the newest ready version (of {listed})"),
            *((f"/model/{model}/{v}/invocations", f"version {v}") for v in sorted(versions)),
        ):
            op = _op(
                f"Container model {model}: scored by {what} through its /invocations",
                mlflow=True,
                errors=CONTAINER_ERRORS,
            )
            paths[path] = {"post": {**op, "requestBody": body}}
    return paths


def _kraken_paths(known: Known) -> Paths:
    bodies = [kraken_body(None, None)] + [kraken_body(m, sig) for m, (_v, sig) in known.items()]
    body = {"oneOf": bodies} if len(bodies) > 1 else bodies[0]
    return {
        path: {"post": _op("ML-Kraken scoring", body=body, errors=SCORING_ERRORS)}
        for path in ("/api/v1/run-model", "/predict")
    }


def _tfs_paths(example_of: Examples) -> Paths:
    tfs_model, version_p = example_of("model"), example_of("version")
    prefixes = (
        ("/v1/models/{model}", [tfs_model]),
        ("/v1/models/{model}/versions/{version}", [tfs_model, version_p]),
    )
    passed = "TF Serving REST, passed through"
    paths: Paths = {}
    for prefix, params in prefixes:
        for tail in ("", "/metadata"):
            paths[prefix + tail] = {
                "get": _op(passed, params=params, errors={"404": "unknown model"})
            }
    bodies = {
        "predict": {
            "type": "object",
            "properties": {
                "signature_name": {"type": "string"},
                "instances": {"type": "array"},
                "inputs": {},
            },
        },
        "examples": {
            "type": "object",
            "properties": {
                "signature_name": {"type": "string"},
                "examples": {"type": "array", "items": {"type": "object"}},
                "context": {"type": "object"},
            },
        },
    }
    for verb in ("predict", "classify", "regress"):
        body = bodies["predict" if verb == "predict" else "examples"]
        for prefix, params in prefixes:
            paths[f"{prefix}:{verb}"] = {
                "post": _op(
                    f"TF Serving REST {verb}, passed through",
                    body=body,
                    params=params,
                    errors={"400": "bad input", "404": "unknown model"},
                )
            }
    return paths


def openapi_document(
    known: Known | None = None, containers: Containers | None = None
) -> dict[str, Any]:
    """``known``: model -> (its newest version seen, its serving signature); ``containers``:
    container model -> its versions routed on this node."""
    known = known or {}
    containers = containers or {}
    first = next(iter(known.items()), None)
    model_ex, version_ex = (first[0], first[1][0]) if first else (None, None)

    def example_of(name: str) -> dict[str, Any]:
        if name == "version":
            return param(name, VERSION_SCHEMA, example=version_ex)
        return param(name, NAME_SCHEMA, example=model_ex)

    components = {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "MODELSYNC_GATEWAY_TOKEN; routes are open when it is unset",
            }
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}, "metaData": {"type": "object"}},
            },
            "MlflowError": {
                "type": "object",
                "required": ["error_code", "message"],
                "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    }
    return document(
        "modelsync gateway",
        "REST front door of a serving node: MLflow and ML-Kraken scoring translated to TF "
        "Serving gRPC Predict, and TF Serving REST passed through. Every scoring answer "
        "carries the version that answered in X-Model-Version.",
        components,
        (
            _plumbing_paths,
            lambda: _mlflow_paths(known, example_of),
            lambda: _container_paths(containers),
            lambda: _kraken_paths(known),
            lambda: _tfs_paths(example_of),
        ),
    )
