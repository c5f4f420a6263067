"""Models: the views (read token) and the policy writes (admin token)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, jsonify

from master import policy_ops
from master.api import (
    ApiError,
    audit,
    body,
    check_model,
    need,
    policy_value,
    state,
    version_arg,
    write_policy,
)
from master.auth import actor
from master.cluster import all_models, model_summary, model_view
from master.index import Fleet
from master.telemetry import MINUTE, last_minute
from modelsync.annotations import Annotation, notes
from modelsync.catalog import Catalog
from modelsync.layout import parse_version
from modelsync.manifest import ManifestError, check_notes
from modelsync.policy import Policy, check_keep_versions, check_label

bp = Blueprint("models", __name__)


@contextmanager
def view_inputs() -> Iterator[tuple[Catalog | None, Policy, Fleet]]:
    """What every view joins: the bucket's catalog, the policy, the fleet's reports."""
    s = state()
    catalog, policy = s.catalog(), s.policy()
    with s.index.fleet(s.db, time.time()) as fleet:
        yield catalog, policy, fleet


@bp.get("/v1/models")
def models() -> Response:
    need("read")
    recent = state().telemetry.last_minute(time.time())
    with view_inputs() as (catalog, policy, fleet):
        out = [
            model_summary(m, catalog, policy, fleet)
            | {"last_minute": recent.get(m, last_minute(None, MINUTE))}
            for m in all_models(catalog, policy, fleet)
        ]
    return jsonify({"models": out, "problems": state().problems()})


@bp.get("/v1/models/<model>")
def model(model: str) -> Response:
    need("read")
    check_model(model)
    with view_inputs() as (catalog, policy, fleet):
        if model not in all_models(catalog, policy, fleet):
            raise ApiError(404, f"no model {model!r} in the bucket, the policy or any node")
        view = model_view(model, catalog, policy, fleet, state().notes())
    view["problems"] = state().problems() + view["problems"]
    if view["kind"] == "container":
        view["problems"] += state().containers.problems_of(model)
    view["last_minute"] = (
        state().telemetry.last_minute(time.time()).get(model, last_minute(None, MINUTE))
    )
    return jsonify(view)


def complete_versions(model: str) -> list[int]:
    """The model's complete versions; 404 for a model nothing knows (not a 422: there is no
    such model to change, whatever the version)."""
    complete = state().complete_versions(model)
    if not complete:
        with view_inputs() as (catalog, policy, fleet):
            known = model in all_models(catalog, policy, fleet)
        if not known:
            raise ApiError(404, f"no model {model!r} in the bucket, the policy or any node")
    return complete


@bp.post("/v1/models/<model>/pin")
def pin(model: str) -> Response:
    need("admin")
    check_model(model)
    version = version_arg(body())
    change = policy_ops.pin(model, version, complete_versions(model))
    return write_policy(model, "model_pinned", change, version=version)


@bp.delete("/v1/models/<model>/pin")
def unpin(model: str) -> Response:
    need("admin")
    check_model(model)
    return write_policy(model, "model_unpinned", policy_ops.unpin(model))


@bp.post("/v1/models/<model>/rollback")
def rollback(model: str) -> Response:
    need("admin")
    check_model(model)
    return write_policy(
        model, "model_rolled_back", policy_ops.rollback(model, complete_versions(model))
    )


@bp.put("/v1/models/<model>/labels/<label>")
def put_label(model: str, label: str) -> Response:
    need("admin")
    check_model(model)
    policy_value(check_label, label, "label")
    version = version_arg(body())
    change = policy_ops.set_label(model, label, version, complete_versions(model))
    return write_policy(model, "label_set", change, label=label, version=version)


@bp.delete("/v1/models/<model>/labels/<label>")
def delete_label(model: str, label: str) -> Response:
    need("admin")
    check_model(model)
    return write_policy(model, "label_deleted", policy_ops.delete_label(model, label), label=label)


@bp.put("/v1/models/<model>/policy")
def put_policy(model: str) -> Response:
    need("admin")
    check_model(model)
    doc = body()
    unknown = set(doc) - {"keep_versions", "disabled"}
    if unknown:
        raise ApiError(400, f"unknown fields {sorted(unknown)}; allowed: keep_versions, disabled")
    keep: Any = policy_ops.UNSET
    if "keep_versions" in doc:
        keep = doc["keep_versions"]
        if keep is not None:
            policy_value(check_keep_versions, keep, "keep_versions")
    disabled = doc.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        raise ApiError(400, "'disabled' must be true or false")
    if keep is policy_ops.UNSET and disabled is None:
        raise ApiError(400, "give keep_versions and/or disabled")
    return write_policy(
        model,
        "model_policy_set",
        policy_ops.set_model_policy(model, keep, disabled),
        keep_versions=None if keep is policy_ops.UNSET else keep,
        disabled=disabled,
    )


@bp.post("/v1/models/<model>/stop")
def stop(model: str) -> Response:
    """Stop a model (ML-Kraken's stop button): the policy disables it; a container model's
    services scale to 0 (they stay, and start again as they were)."""
    return _start_stop(model, stopped=True)


@bp.post("/v1/models/<model>/start")
def start(model: str) -> Response:
    """Start a stopped model: enabled again in the policy; its services scale back up."""
    return _start_stop(model, stopped=False)


def _start_stop(model: str, stopped: bool) -> Response:
    need("admin")
    check_model(model)
    complete_versions(model)  # 404 for a model nothing knows
    resp = write_policy(
        model,
        "model_stopped" if stopped else "model_started",
        policy_ops.set_model_policy(model, policy_ops.UNSET, stopped),
    )
    state().containers.wake()
    return resp


@bp.get("/v1/containers")
def containers() -> Response:
    """Container models' Swarm services as the master last saw them: per model version its
    service, image, host port, replicas and tasks; and what could not be run, and why."""
    need("read")
    return jsonify(state().containers.status())


@bp.patch("/v1/models/<model>/versions/<version>")
def annotate(model: str, version: str) -> Response:
    """Edit a version's description and/or tags: kept in the bucket's annotations object
    (``modelsync.annotations``), written with if_generation_match, audited with its actor."""
    need("admin")
    check_model(model)
    v = parse_version(version)
    if v is None:
        raise ApiError(404, f"version {version!r} does not exist (versions are positive integers)")
    doc = body()
    unknown = set(doc) - {"description", "tags"}
    if unknown or not doc:
        raise ApiError(400, f"give description and/or tags (unknown fields: {sorted(unknown)})")
    s = state()
    with view_inputs() as (catalog, _policy, _fleet):
        cv = catalog.models.get(model, {}).get(v) if catalog else None
    if cv is None:
        raise ApiError(404, f"{model} has no version {v} in the bucket")
    before = s.notes(max_age_s=0).get(model, v)
    current = notes(cv.description, cv.tags, before)
    try:
        description, tags = check_notes(
            doc.get("description", current.description), doc.get("tags", current.tags), "body"
        )
    except ManifestError as exc:
        raise ApiError(400, str(exc)) from None
    note = Annotation(description, tags, actor() or "", time.time())
    _doc, generation, _written = s.annotations.update(lambda a: a.with_version(model, v, note))
    s.notes_written()
    audit("version_annotated", model, version=v, description=description, tags=tags)
    return jsonify(
        {
            "model": model,
            "version": v,
            **notes(cv.description, cv.tags, note).to_json(),
            "annotations_generation": generation,
        }
    )
