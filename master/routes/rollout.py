"""Staged rollouts: the spec, the state, the operator's hands (pause, resume, promote, abort)
and clearing a rejected version."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify

from master import policy_ops
from master.api import ApiError, body, check_model, need, state, write_policy
from master.index import CONFIG_MANAGER
from master.rollout import last_judgement
from modelsync.policy import check_version
from modelsync.rollout import RolloutError, RolloutSpec, parse_spec

bp = Blueprint("rollout", __name__)
ACTIONS = ("pause", "resume", "promote", "abort")


def live_nodes() -> list[str]:
    s = state()
    with s.index.fleet(s.db, time.time()) as fleet:
        return sorted(fleet.live(CONFIG_MANAGER))


def rollout_json(model: str) -> dict[str, Any]:
    s = state()
    policy = s.policy()
    mp = policy.for_model(model)
    spec = policy.rollout_spec(model)
    rs = mp.rollout_state
    now = time.time()
    doc: dict[str, Any] = {
        "model": model,
        "spec": None if spec is None else spec.to_json(),
        "spec_effective": None if spec is None else spec.effective_json(),
        "spec_from": "model" if mp.rollout is not None else "defaults" if spec else None,
        # what a field left out of a spec means (None: derived from bake_s, see spec_effective)
        "spec_defaults": RolloutSpec().full_json(),
        "rejected": sorted(mp.rejected),
        "status": "idle" if rs is None else rs.status,
    }
    if rs is None:
        return doc
    doc.update({k: v for k, v in rs.to_json().items() if k != "nodes"})
    doc["nodes_on_version"] = list(rs.nodes)
    doc["stages"] = None if spec is None else spec.stages()
    doc["bake_remaining_s"] = None
    if rs.status == "baking" and spec is not None:
        doc["bake_remaining_s"] = max(0.0, round(spec.bake_s - (now - rs.stage_started_at), 1))
    judged = last_judgement(s.db, model) if rs.active else None
    if judged is not None and (judged.get("version"), judged.get("stage")) != (
        rs.version,
        rs.stage,
    ):
        judged = None  # an earlier stage's
    doc["judgement"] = judged  # the controller's last, of this stage: what it is decided on
    doc["waiting"] = bool(judged and rs.status == "baking" and judged["verdict"] == "waiting")
    if judged is not None and judged.get("new") is not None:
        doc["figures"] = {
            name: {"version": v, **judged[name], "errors": _errors(judged[name])}
            for name, v in (("new", rs.version), ("baseline", rs.previous))
        }
    return doc


def _errors(side: dict[str, Any]) -> int:
    return int(side.get("client_errors", 0)) + int(side.get("server_errors", 0))


@bp.get("/v1/models/<model>/rollout")
def get_rollout(model: str) -> Response:
    need("read")
    check_model(model)
    return jsonify(rollout_json(model))


@bp.put("/v1/models/<model>/rollout")
def put_rollout(model: str) -> Response:
    need("admin")
    check_model(model)
    try:
        spec = parse_spec(body())
    except RolloutError as exc:
        raise ApiError(400, str(exc)) from None
    now = time.time()
    change = policy_ops.set_rollout(model, spec, state().rollouts.served_stable(model, now), now)
    return write_policy(model, "rollout_spec_set", change, spec=spec.to_json())


@bp.delete("/v1/models/<model>/rollout")
def delete_rollout(model: str) -> Response:
    need("admin")
    check_model(model)
    return write_policy(model, "rollout_spec_removed", policy_ops.set_rollout(model, None))


@bp.post("/v1/models/<model>/rollout/<action>")
def rollout_action(model: str, action: str) -> Response:
    need("admin")
    check_model(model)
    if action not in ACTIONS:
        raise ApiError(404, f"no rollout action {action!r}; use one of {list(ACTIONS)}")
    return write_policy(
        model,
        f"rollout_{action}",
        policy_ops.rollout_action(model, action, live_nodes(), time.time()),
    )


@bp.delete("/v1/models/<model>/rejected/<version>")
def unreject(model: str, version: str) -> Response:
    need("admin")
    check_model(model)
    try:
        v = check_version(int(version), "version") if version.isdigit() else None
    except Exception:
        v = None
    if v is None:
        raise ApiError(400, f"'version' must be a positive integer, got {version!r}")
    return write_policy(model, "rejection_cleared", policy_ops.unreject(model, v), version=v)
