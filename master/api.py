"""What every blueprint of the master uses: its state, auth, request bodies, audit, policy
writes. Validation of policy values calls ``modelsync.policy``'s own rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, jsonify, request

from master import auth
from master.state import MasterState
from modelsync.layout import model_name_problem
from modelsync.log import get_logger
from modelsync.policy import Policy, PolicyError, check_version, served_set

log = get_logger("master")
STATE_KEY = "modelsync.state"


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def state() -> MasterState:
    s: MasterState = current_app.extensions[STATE_KEY]
    return s


def need(kind: str) -> str:
    """The caller must be of ``kind`` (node, admin, or read): a bearer token, or a signed-in
    console session (whose writes carry its CSRF token). See ``master.auth``."""
    try:
        return auth.guard().need(kind)
    except auth.AuthError as exc:
        raise ApiError(exc.status, exc.message, retry_after(exc)) from None


def retry_after(exc: auth.AuthError) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else {}


def body() -> dict[str, Any]:
    """The request's JSON object ({} when there is no body), whatever the Content-Type says
    (``curl -d`` sends a form type): only a body that does not parse is refused."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 JSON") from None
    except ValueError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def policy_value(check: Callable[[Any, str], Any], value: Any, name: str) -> Any:
    """Validate one field with a rule of ``modelsync.policy``; a bad value is a 400."""
    try:
        return check(value, f"'{name}'")
    except PolicyError as exc:
        raise ApiError(400, str(exc)) from None


def version_arg(doc: dict[str, Any]) -> int:
    version: int = policy_value(check_version, doc.get("version"), "version")
    return version


def check_model(model: str) -> None:
    problem = model_name_problem(model)
    if problem:
        raise ApiError(400, problem)


def audit(event: str, model: str | None, **detail: Any) -> None:
    """An audit entry: what, by whom (the caller's name, ``master.auth``), from where."""
    who = auth.actor()
    state().db.add_event(
        "audit",
        event,
        model=model,
        detail={
            **detail,
            "actor": who,
            "request_id": g.get("request_id"),
            "remote": request.remote_addr,
        },
    )
    log.info(event, model=model, actor=who, request_id=g.get("request_id"), **detail)


def write_policy(
    model: str, event: str, change: Callable[[Policy], Policy], **detail: Any
) -> Response:
    """Apply ``change`` to the policy in the bucket (if_generation_match), audit it, and answer
    with the model's policy as stored — its rollout spec too — and the versions it now makes
    every node serve (``target_versions``: a pin and the labels' targets, so an answer never
    claims "only v41" while a label keeps v40 serving)."""
    s = state()
    policy, generation, written = s.policies.update(change)
    s.policy_written(policy, generation)
    audit(event, model, generation=generation, changed=written, **detail)
    mp = policy.for_model(model)
    catalog = s.writer.current
    served = served_set(model, catalog.complete_versions(model) if catalog else [], policy)
    spec = policy.rollout_spec(model)
    return jsonify(
        {
            "model": model,
            "policy": {
                "keep_versions": policy.keep_versions(model),
                "pin": mp.pin,
                "labels": dict(mp.labels),
                "disabled": mp.disabled,
                "rollout": None if mp.rollout is None else mp.rollout.to_json(),
            },
            "rollout_spec": None if spec is None else spec.to_json(),  # the model's or defaults'
            "target_versions": sorted(served.versions),
            "generation": generation,
            "changed": written,
        }
    )


def json_error(
    status: int, message: str, headers: dict[str, str] | None = None
) -> tuple[Response, int]:
    resp = jsonify({"error": message, "request_id": g.get("request_id")})
    resp.headers.update(headers or {})
    return resp, status
