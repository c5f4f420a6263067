"""What every blueprint of the master uses: its state, auth, request bodies, audit, policy
writes. Validation of policy values calls ``modelsync.policy``'s own rules."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, jsonify, request

from master.state import MasterState
from modelsync.layout import model_name_problem
from modelsync.log import get_logger
from modelsync.policy import Policy, PolicyError, check_version

log = get_logger("master")
STATE_KEY = "modelsync.state"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def state() -> MasterState:
    s: MasterState = current_app.extensions[STATE_KEY]
    return s


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):].strip() or None
    return None


def _matches(token: str | None, expected: str | None) -> bool:
    return bool(token and expected and hmac.compare_digest(token.encode(), expected.encode()))


def need(kind: str) -> None:
    """The request's bearer token must be of ``kind``: node, admin, or read (read or admin)."""
    settings = state().settings
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
    """The request's JSON object ({} when there is no body)."""
    data = request.get_json(silent=True)
    if data is None:
        if request.get_data():
            raise ApiError(400, "the request body is not valid JSON")
        return {}
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
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
    state().db.add_event("audit", event, model=model,
                         detail={**detail, "request_id": g.get("request_id"),
                                 "remote": request.remote_addr})
    log.info(event, model=model, request_id=g.get("request_id"), **detail)


def write_policy(model: str, event: str, change: Callable[[Policy], Policy],
                 **detail: Any) -> Response:
    """Apply ``change`` to the policy in the bucket (if_generation_match), audit it, and answer
    with the model's policy."""
    s = state()
    policy, generation, written = s.policies.update(change)
    s.policy_written()
    audit(event, model, generation=generation, changed=written, **detail)
    mp = policy.for_model(model)
    return jsonify({"model": model, "policy": {
        "keep_versions": policy.keep_versions(model), "pin": mp.pin,
        "labels": dict(mp.labels), "disabled": mp.disabled},
        "generation": generation, "changed": written})


def json_error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message, "request_id": g.get("request_id")}), status

