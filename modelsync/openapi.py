"""What the master's and the gateway's OpenAPI 3 documents share (pure): the error response, a
parameter, the Prometheus page, and the document's frame."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from modelsync import __version__

Paths = dict[str, dict[str, Any]]


def error_response(schema: str = "Error", description: str = "error") -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def param(
    name: str,
    schema: dict[str, Any],
    where: str = "path",
    required: bool = True,
    example: Any = None,
) -> dict[str, Any]:
    out = {"name": name, "in": where, "required": required, "schema": schema}
    if example is not None:
        out["example"] = example
    return out


def operation(
    summary: str,
    security: str | None,
    errors: Mapping[str, str],
    *,
    error: dict[str, Any] | None = None,
    ok: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
    body_example: Any = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One operation: ``ok`` (any JSON object by default) or an ``error`` response for each
    code in ``errors``; ``security`` names the bearer scheme, None for an open route."""
    err = error or error_response()
    responses: dict[str, Any] = {
        "200": ok
        or {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    }
    for code, text in errors.items():
        responses[code] = {**err, "description": text}
    out: dict[str, Any] = {
        "summary": summary,
        "responses": responses,
        "security": [{security: []}] if security else [],
    }
    if body is not None:
        media: dict[str, Any] = {"schema": body}
        if body_example is not None:
            media["example"] = body_example
        out["requestBody"] = {"required": True, "content": {"application/json": media}}
    if params:
        out["parameters"] = params
    return out


def metrics_path() -> Paths:
    """``GET /metrics``: Prometheus' text format, no token."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    ok = {"200": {"description": "OK", "content": text}}
    return {"/metrics": {"get": {"summary": "Prometheus metrics", "security": [], "responses": ok}}}


def document(
    title: str,
    description: str,
    components: dict[str, Any],
    parts: Iterable[Callable[[], Paths]],
) -> dict[str, Any]:
    """An OpenAPI 3.0 document whose paths are the union of ``parts``."""
    paths: Paths = {}
    for part in parts:
        paths.update(part())
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": __version__, "description": description},
        "components": components,
        "paths": paths,
    }
