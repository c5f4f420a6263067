"""What the master's and the gateway's OpenAPI 3 documents share (pure): the error response, a
parameter, the Prometheus page, and the document's frame."""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
