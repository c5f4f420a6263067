"""The OpenAPI 3 document of the master's API (a test checks it against the routes)."""

from __future__ import annotations

from typing import Any

from modelsync import __version__

_ERR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _op(
    summary: str,
    security: str | None,
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    extra: dict[str, str] | None = None,
    ok: str = "OK",
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": ok, "content": {"application/json": {"schema": {"type": "object"}}}}
    }
    if security:
        responses["401"] = _ERR
        responses["403"] = _ERR
    for code, text in (extra or {}).items():
        responses[code] = {**_ERR, "description": text}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if security:
        op["security"] = [{security: []}]
    else:
        op["security"] = []
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema}


MODEL = _path_param("model", "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LABEL = _path_param("label", "^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
VERSION_BODY = {
    "type": "object",
    "required": ["version"],
    "additionalProperties": False,
    "properties": {"version": {"type": "integer", "minimum": 1, "maximum": 9223372036854775807}},
}


ROLLOUT_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "canary_nodes": {"type": "integer", "minimum": 1, "maximum": 10000},
        "waves": {
            "type": "array",
            "minItems": 1,
            "maxItems": 10,
            "items": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
        },
        "bake_s": {"type": "number", "minimum": 0, "maximum": 604800},
        "max_error_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "max_p99_ratio": {"type": "number", "minimum": 1, "maximum": 1000},
        "min_requests": {"type": "integer", "minimum": 0, "maximum": 1000000000},
    },
}
TIME = {
    "type": "string",
    "pattern": r"^(\d+(\.\d+)?[smhd]|\d+(\.\d+)?)$",
    "description": "a duration before now (15m, 1h, 7d) or a Unix time",
}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def openapi_document() -> dict[str, Any]:
    read, admin, node = "readToken", "adminToken", "nodeToken"
    model_errors = {"400": "bad input", "404": "unknown model"}
    write_errors = {
        "400": "bad input",
        "409": "the change cannot apply",
        "422": "the version is not complete in the bucket",
        "503": "the bucket is down",
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "modelsync master",
            "version": __version__,
            "description": "Admin API of modelsync: nodes, models, policy, cluster view.",
        },
        "components": {
            "securitySchemes": {
                read: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the read token (the admin token also reads)",
                },
                admin: {"type": "http", "scheme": "bearer"},
                node: {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}},
                }
            },
        },
        "paths": {
            "/healthz": {"get": _op("The process is alive", None)},
            "/readyz": {
                "get": _op("Ready: the database answers", None, extra={"503": "not ready"})
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/v1/openapi.json": {"get": _op("This document", None)},
            "/v1/nodes/heartbeat": {
                "post": _op(
                    "A node reports its status and events",
                    node,
                    body={
                        "type": "object",
                        "required": ["node_id", "role"],
                        "properties": {
                            "node_id": {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                            },
                            "role": {
                                "type": "string",
                                "enum": ["puller", "config_manager", "gateway"],
                            },
                            "hostname": {"type": "string"},
                            "version": {"type": "string"},
                            "heartbeat_s": {"type": "number"},
                            "status": {"type": "object"},
                            "telemetry": {
                                "type": "object",
                                "description": "per-model request "
                                "figures since the last beat (config manager)",
                            },
                            "events": {
                                "type": "array",
                                "maxItems": 1000,
                                "items": {"type": "object"},
                            },
                        },
                    },
                    extra={"400": "bad input"},
                )
            },
            "/v1/nodes": {"get": _op("Registered nodes (and the Swarm view)", read)},
            "/v1/nodes/{node_id}": {
                "get": _op(
                    "One node", read, params=[_path_param("node_id")], extra={"404": "unknown node"}
                )
            },
            "/v1/models": {
                "get": _op(
                    "Models: bucket, policy, convergence", read, extra={"503": "the bucket is down"}
                )
            },
            "/v1/models/{model}": {
                "get": _op(
                    "One model, per version and node", read, params=[MODEL], extra=model_errors
                )
            },
            "/v1/models/{model}/pin": {
                "post": _op(
                    "Pin a version", admin, body=VERSION_BODY, params=[MODEL], extra=write_errors
                ),
                "delete": _op("Unpin", admin, params=[MODEL], extra=write_errors),
            },
            "/v1/models/{model}/rollback": {
                "post": _op(
                    "Pin the newest complete version older than the one served",
                    admin,
                    params=[MODEL],
                    extra=write_errors,
                )
            },
            "/v1/models/{model}/labels/{label}": {
                "put": _op(
                    "Point a label at a version",
                    admin,
                    body=VERSION_BODY,
                    params=[MODEL, LABEL],
                    extra=write_errors,
                ),
                "delete": _op("Remove a label", admin, params=[MODEL, LABEL], extra=write_errors),
            },
            "/v1/models/{model}/policy": {
                "put": _op(
                    "Set keep_versions and/or disabled",
                    admin,
                    params=[MODEL],
                    body={
                        "type": "object",
                        "additionalProperties": False,
                        "minProperties": 1,
                        "properties": {
                            "keep_versions": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 1000,
                                "nullable": True,
                            },
                            "disabled": {"type": "boolean"},
                        },
                    },
                    extra=write_errors,
                )
            },
            "/v1/models/{model}/metrics": {
                "get": _op(
                    "Request telemetry of a model over time, over every node (or one node): "
                    "requests, errors, error rate, p50/p90/p99 ms, per version",
                    read,
                    params=[
                        MODEL,
                        *[
                            _query(n, s)
                            for n, s in (
                                ("since", TIME),
                                ("until", TIME),
                                ("step", {"type": "integer", "minimum": 1, "maximum": 86400}),
                                ("node", {"type": "string"}),
                            )
                        ],
                    ],
                    extra={"400": "bad input"},
                )
            },
            "/v1/metrics/sparklines": {
                "get": _op(
                    "Requests per minute of every model, for tables",
                    read,
                    params=[_query("since", TIME)],
                    extra={"400": "bad input"},
                )
            },
            "/v1/models/{model}/rollout": {
                "get": _op(
                    "The model's staged rollout: spec, state, canary vs baseline",
                    read,
                    params=[MODEL],
                    extra={"400": "bad input"},
                ),
                "put": _op(
                    "Set the model's rollout spec",
                    admin,
                    params=[MODEL],
                    body=ROLLOUT_SPEC,
                    extra=write_errors,
                ),
                "delete": _op(
                    "Remove the model's own rollout spec", admin, params=[MODEL], extra=write_errors
                ),
            },
            "/v1/models/{model}/rollout/{action}": {
                "post": _op(
                    "pause, resume, promote (skip the rest of the bake) or abort (roll back)",
                    admin,
                    params=[MODEL, _path_param("action", "^(pause|resume|promote|abort)$")],
                    extra={**write_errors, "404": "unknown action"},
                )
            },
            "/v1/models/{model}/rejected/{version}": {
                "delete": _op(
                    "Clear a rejected version (it may be rolled out again)",
                    admin,
                    params=[MODEL, _path_param("version", "^[1-9][0-9]{0,18}$")],
                    extra=write_errors,
                )
            },
            "/v1/models/{model}/requests": {
                "get": _op(
                    "Recent requests of a model through the nodes' gateways",
                    read,
                    params=[MODEL],
                    extra={"400": "bad input"},
                )
            },
            "/v1/models/{model}/versions/{version}/signature": {
                "get": _op(
                    "A version's signatures (from the bucket), with an example body",
                    read,
                    params=[MODEL, _path_param("version", "^[1-9][0-9]{0,17}$")],
                    extra={
                        "400": "bad input",
                        "404": "no saved_model.pb",
                        "409": "not a SavedModel",
                    },
                )
            },
            "/v1/models/{model}/try": {
                "post": _op(
                    "Send one request through a node's gateway (the console's try-it)",
                    read,
                    params=[MODEL],
                    body={
                        "type": "object",
                        "required": ["node", "body"],
                        "properties": {
                            "node": {"type": "string"},
                            "body": {"type": "object"},
                            "version": {"type": "integer", "minimum": 1},
                        },
                    },
                    extra={
                        "400": "bad input",
                        "409": "no live gateway on that node",
                        "502": "the gateway did not answer",
                    },
                )
            },
            "/v1/sync": {"post": _op("Every node syncs at its next heartbeat", admin)},
            "/v1/cluster": {
                "get": _op(
                    "Per model: targets, AVAILABLE counts, convergence",
                    read,
                    extra={"503": "the bucket is down"},
                )
            },
            "/v1/events": {
                "get": _op(
                    "Node events and the audit log, newest first",
                    read,
                    params=[
                        {"name": n, "in": "query", "required": False, "schema": s}
                        for n, s in (
                            ("model", {"type": "string"}),
                            ("node", {"type": "string"}),
                            ("kind", {"type": "string", "enum": ["node", "audit"]}),
                            ("since", TIME),
                            ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                        )
                    ],
                    extra={"400": "bad input"},
                )
            },
        },
    }
