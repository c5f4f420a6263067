"""The OpenAPI 3 document of the master's API (a test checks it against the routes).

The document is assembled from one part per area of the API, as the app is from blueprints;
every ``pattern`` and bound comes from the rule it describes (``modelsync.layout``,
``modelsync.policy``, ``modelsync.rollout``), never retyped here.
"""

from __future__ import annotations

from typing import Any

from master.openapi_jobs import job_schema, jobs_paths
from master.routes.telemetry import DURATION_PATTERN
from modelsync.layout import MAX_VERSION, NAME_PATTERN, VERSION_PATTERN, json_pattern
from modelsync.manifest import MAX_DESCRIPTION_CHARS, MAX_TAG_VALUE_CHARS, MAX_TAGS
from modelsync.openapi import Paths, document, metrics_path, operation, param
from modelsync.policy import LABEL_PATTERN, MAX_KEEP_VERSIONS
from modelsync.reports import MAX_EVENTS_PER_BEAT, ROLES
from modelsync.rollout import spec_schema

READ, ADMIN, NODE, PUBLISH = "readToken", "adminToken", "nodeToken", "publishToken"


def op(
    summary: str,
    security: str | None,
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One operation: JSON in and out, 401/403 when it needs a token, ``extra`` error codes."""
    errors = {"401": "error", "403": "error"} if security else {}
    if security:
        errors["429"] = "too many wrong tokens from this address"
    return operation(summary, security, {**errors, **(extra or {})}, body=body, params=params)


def path_param(name: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = json_pattern(pattern)
    return param(name, schema)


def query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return param(name, schema, "query", required=False)


MODEL = path_param("model", NAME_PATTERN)
LABEL = path_param("label", LABEL_PATTERN)
VERSION = path_param("version", VERSION_PATTERN)
VERSION_BODY = {
    "type": "object",
    "required": ["version"],
    "additionalProperties": False,
    "properties": {"version": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}},
}
TIME = {
    "type": "string",
    "pattern": json_pattern(f"({DURATION_PATTERN}|\\d+(\\.\\d+)?)"),
    "description": "a duration before now (15m, 1h, 7d) or a Unix time",
}
MODEL_ERRORS = {"400": "bad input", "404": "unknown model"}
WRITE_ERRORS = {
    "400": "bad input",
    "409": "the change cannot apply",
    "422": "the version is not complete in the bucket",
    "503": "the bucket is down",
}


def _health_paths() -> Paths:
    return {
        "/healthz": {"get": op("The process is alive", None)},
        "/readyz": {"get": op("Ready: the database answers", None, extra={"503": "not ready"})},
        **metrics_path(),
        "/v1/openapi.json": {"get": op("This document", None)},
    }


def _node_paths() -> Paths:
    beat = {
        "type": "object",
        "required": ["node_id", "role"],
        "properties": {
            "node_id": {"type": "string", "pattern": json_pattern(NAME_PATTERN)},
            "role": {"type": "string", "enum": list(ROLES)},
            "hostname": {"type": "string"},
            "version": {"type": "string"},
            "heartbeat_s": {"type": "number"},
            "status": {"type": "object"},
            "telemetry": {
                "type": "object",
                "description": "per-model request figures since the last acknowledged beat "
                "(config manager, gateway); a batch numbered (boot, seq) is counted once, so a "
                "sender repeats one whose answer it lost",
                "properties": {
                    "boot": {"type": "string", "pattern": "^[0-9a-f]{1,64}$"},
                    "seq": {"type": "integer", "minimum": 1},
                    "models": {"type": "object"},
                },
            },
            "events": {
                "type": "array",
                "maxItems": MAX_EVENTS_PER_BEAT,
                "items": {"type": "object"},
            },
        },
    }
    return {
        "/v1/nodes/heartbeat": {
            "post": op(
                "A node reports its status and events", NODE, body=beat, extra={"400": "bad input"}
            )
        },
        "/v1/nodes": {"get": op("Registered nodes (and the Swarm view)", READ)},
        "/v1/nodes/{node_id}": {
            "get": op(
                "One node",
                READ,
                params=[path_param("node_id", NAME_PATTERN)],
                extra={"404": "unknown node"},
            )
        },
        "/v1/sync": {"post": op("Every node syncs at its next heartbeat", ADMIN)},
    }


def upload_op() -> dict[str, Any]:
    """A SavedModel .tar.gz as the body, the options in the query string."""
    out = op(
        "Publish a SavedModel .tar.gz as a new version (the checks of modelsync publish)",
        ADMIN,
        params=[
            MODEL,
            query("version", {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}),
            query("overwrite", {"type": "boolean"}),
            query("description", {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS}),
            query("tag", {"type": "array", "items": {"type": "string"}, "maxItems": MAX_TAGS}),
        ],
        extra={
            "201": "published",
            "400": "not a SavedModel tarball, or bad options",
            "409": "the version exists",
            "411": "no Content-Length",
            "413": "larger than MODELSYNC_UPLOAD_MAX_BYTES",
            "503": "the bucket is down",
        },
    )
    # the bytes of a .tar.gz (any content type is read as such; the console sends
    # application/gzip)
    out["requestBody"] = {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
    return out


def _model_paths() -> Paths:
    notes_body = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS},
            "tags": {
                "type": "object",
                "maxProperties": MAX_TAGS,
                "additionalProperties": {"type": "string", "maxLength": MAX_TAG_VALUE_CHARS},
            },
        },
    }
    policy_body = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "keep_versions": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_KEEP_VERSIONS,
                "nullable": True,
            },
            "disabled": {"type": "boolean"},
        },
    }
    return {
        "/v1/models": {
            "get": op(
                "Models: bucket, policy, convergence", READ, extra={"503": "the bucket is down"}
            )
        },
        "/v1/models/{model}": {
            "get": op("One model, per version and node", READ, params=[MODEL], extra=MODEL_ERRORS)
        },
        "/v1/models/{model}/pin": {
            "post": op(
                "Pin a version", ADMIN, body=VERSION_BODY, params=[MODEL], extra=WRITE_ERRORS
            ),
            "delete": op("Unpin", ADMIN, params=[MODEL], extra=WRITE_ERRORS),
        },
        "/v1/models/{model}/rollback": {
            "post": op(
                "Pin the newest complete version older than the one served",
                ADMIN,
                params=[MODEL],
                extra=WRITE_ERRORS,
            )
        },
        "/v1/models/{model}/labels/{label}": {
            "put": op(
                "Point a label at a version",
                ADMIN,
                body=VERSION_BODY,
                params=[MODEL, LABEL],
                extra=WRITE_ERRORS,
            ),
            "delete": op("Remove a label", ADMIN, params=[MODEL, LABEL], extra=WRITE_ERRORS),
        },
        "/v1/models/{model}/policy": {
            "put": op(
                "Set keep_versions and/or disabled",
                ADMIN,
                params=[MODEL],
                body=policy_body,
                extra=WRITE_ERRORS,
            )
        },
        "/v1/models/{model}/versions": {
            "post": upload_op(),
        },
        "/v1/models/{model}/versions/{version}": {
            "patch": op(
                "Edit a version's description and/or tags (kept in the bucket's annotations)",
                ADMIN,
                params=[MODEL, VERSION],
                body=notes_body,
                extra={**WRITE_ERRORS, "404": "no such version in the bucket"},
            )
        },
        "/v1/models/{model}/stop": {
            "post": op(
                "Stop a model: disabled in the policy; a container model's services scale to 0",
                ADMIN,
                params=[MODEL],
                extra=WRITE_ERRORS,
            )
        },
        "/v1/models/{model}/start": {
            "post": op(
                "Start a stopped model: enabled again; its services scale back up",
                ADMIN,
                params=[MODEL],
                extra=WRITE_ERRORS,
            )
        },
        "/v1/containers": {
            "get": op(
                "Container models' Swarm services: service, image, host port, replicas, tasks",
                READ,
            )
        },
        "/v1/models/{model}/rejected/{version}": {
            "delete": op(
                "Clear a rejected version (it may be rolled out again)",
                ADMIN,
                params=[MODEL, VERSION],
                extra=WRITE_ERRORS,
            )
        },
    }


def _telemetry_paths() -> Paths:
    series = [
        query("since", TIME),
        query("until", TIME),
        query("step", {"type": "integer", "minimum": 1, "maximum": 86400}),
        query("node", {"type": "string"}),
    ]
    return {
        "/v1/models/{model}/metrics": {
            "get": op(
                "Request telemetry of a model over time, over every node (or one node): "
                "requests, errors, error rate, p50/p90/p99 ms, per version",
                READ,
                params=[MODEL, *series],
                extra={"400": "bad input"},
            )
        },
        "/v1/metrics/sparklines": {
            "get": op(
                "Requests per minute of every model, for tables",
                READ,
                params=[query("since", TIME)],
                extra={"400": "bad input"},
            )
        },
    }


def _rollout_paths() -> Paths:
    return {
        "/v1/models/{model}/rollout": {
            "get": op(
                "The model's staged rollout: spec (spec_defaults, spec_effective), state, and "
                "the judgement of the baking stage (source, window, requests per side, checks)",
                READ,
                params=[MODEL],
                extra={"400": "bad input"},
            ),
            "put": op(
                "Set the model's rollout spec",
                ADMIN,
                params=[MODEL],
                body=spec_schema(),
                extra=WRITE_ERRORS,
            ),
            "delete": op(
                "Remove the model's own rollout spec", ADMIN, params=[MODEL], extra=WRITE_ERRORS
            ),
        },
        "/v1/models/{model}/rollout/{action}": {
            "post": op(
                "pause, resume, promote (skip the rest of the bake) or abort (roll back)",
                ADMIN,
                params=[MODEL, path_param("action", "(pause|resume|promote|abort)")],
                extra={**WRITE_ERRORS, "404": "unknown action"},
            )
        },
    }


def _scoring_paths() -> Paths:
    try_body = {
        "type": "object",
        "required": ["node", "body"],
        "properties": {
            "node": {"type": "string"},
            "body": {"type": "object"},
            "version": {"type": "integer", "minimum": 1},
        },
    }
    return {
        "/v1/models/{model}/requests": {
            "get": op(
                "Recent requests of a model through the nodes' gateways",
                READ,
                params=[MODEL],
                extra={"400": "bad input"},
            )
        },
        "/v1/models/{model}/versions/{version}/signature": {
            "get": op(
                "A version's signatures (from the bucket), with an example body",
                READ,
                params=[MODEL, VERSION],
                extra={"400": "bad input", "404": "no saved_model.pb", "409": "not a SavedModel"},
            )
        },
        "/v1/models/{model}/try": {
            "post": op(
                "Send one request through a node's gateway (the console's try-it)",
                READ,
                params=[MODEL],
                body=try_body,
                extra={
                    "400": "bad input",
                    "409": "no live gateway on that node, or it reports its gateway somewhere "
                    "the master does not send to (refused: nothing is sent)",
                    "502": "the gateway did not answer",
                },
            )
        },
    }


def _cluster_paths() -> Paths:
    events = [
        query("model", {"type": "string"}),
        query("node", {"type": "string"}),
        query("kind", {"type": "string", "enum": ["node", "audit", "master"]}),
        query("since", TIME),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
    ]
    return {
        "/v1/cluster": {
            "get": op(
                "Per model: targets, AVAILABLE counts, convergence",
                READ,
                extra={"503": "the bucket is down"},
            )
        },
        "/v1/events": {
            "get": op(
                "Node events and the audit log, newest first",
                READ,
                params=events,
                extra={"400": "bad input"},
            )
        },
    }


def _watch_paths() -> Paths:
    line = {
        "type": "object",
        "properties": {
            "catalog": {"type": "integer", "nullable": True},
            "policy": {"type": "integer", "nullable": True},
        },
    }
    watch = op(
        "A held stream of JSON lines {catalog, policy}: the generations the master knows, now, "
        "at each change and every MODELSYNC_WATCH_KEEPALIVE_S (a line says look now; the "
        "bucket says what)",
        NODE,
        extra={"503": "no watch slot free, or the master stops: poll the bucket"},
    )
    watch["responses"]["200"] = {
        "description": "one JSON object a line, for as long as the node holds it",
        "content": {"application/x-ndjson": {"schema": line}},
    }
    published = {
        "type": "object",
        "required": ["model", "version"],
        "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "pattern": json_pattern(NAME_PATTERN)},
            "version": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
        },
    }
    return {
        "/v1/watch": {"get": watch},
        "/v1/catalog/versions": {
            "post": op(
                "A publisher wrote this version (its marker last): the catalog takes it now",
                PUBLISH,
                body=published,
                extra={"400": "bad input", "503": "the bucket is down"},
            )
        },
    }


PARTS = (
    _health_paths,
    _node_paths,
    _watch_paths,
    _model_paths,
    _telemetry_paths,
    _rollout_paths,
    _scoring_paths,
    _cluster_paths,
    jobs_paths,
)


def openapi_document() -> dict[str, Any]:
    bearer = {"type": "http", "scheme": "bearer"}
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}},
    }
    components = {
        "securitySchemes": {
            READ: {**bearer, "description": "the read token (the admin token also reads)"},
            ADMIN: bearer,
            NODE: {
                **bearer,
                "description": "a node's own token (modelsync node-token NODE_ID): "
                "that node's heartbeats and watch only",
            },
            PUBLISH: {
                **bearer,
                "description": "the publish token (the admin token also does): tell the "
                "master that a version was published, nothing else",
            },
        },
        "schemas": {"Error": error, "Job": job_schema()},
    }
    return document(
        "modelsync master",
        "Admin API of modelsync: nodes, models, policy, cluster view.",
        components,
        PARTS,
    )
