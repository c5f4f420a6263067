"""The rollout controller: runs ``rollout_plan.step`` for every model with a rollout spec every
``rollout_s`` and writes the new states into the policy (``if_generation_match``: a write that
lost a race to another writer is planned again from what that writer wrote).

For a baking stage it first reads the stage's window of telemetry (every node's server and
gateway figures since ``warmup_s`` after the stage's nodes all served) and judges it
(``rollout_judge.judge_stage``); the judgement is kept in SQLite (``meta``), so that the API of
any master process shows what the controller last decided on, and goes into the audit entry of
the step it led to.

Only the master process that runs the background jobs drives rollouts; with the master down no
state changes, so every node stays where it is.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol

from master.cluster import model_kind
from master.db import Database
from master.index import FleetIndex
from master.policy_ops import PolicyStore
from master.rollout_judge import StageJudgement, judge_stage, window_start
from master.rollout_plan import ModelFleet, Step, apply, served_everywhere, step
from master.telemetry import TelemetryStore
from modelsync.catalog import Catalog
from modelsync.log import get_logger
from modelsync.policy import Policy
from modelsync.rollout import RolloutSpec, RolloutState

log = get_logger("master")


class RolloutInputs(Protocol):
    """What the controller reads and writes (the master's ``MasterState``)."""

    db: Database
    index: FleetIndex
    policies: PolicyStore
    telemetry: TelemetryStore

    def catalog(self) -> Catalog | None: ...
    def policy_written(self, policy: Policy | None = None, generation: int = 0) -> None: ...


JUDGEMENT_KEY = "rollout_judgement:"  # + model: the last judgement, in the meta table


def judge(
    telemetry: TelemetryStore, model: str, spec: RolloutSpec, rs: RolloutState, now: float
) -> StageJudgement:
    """The baking stage's judgement over its window (read from SQLite)."""
    start = window_start(spec, rs)
    rows = telemetry.window(model, start, now + 1) if now >= start else {}
    return judge_stage(spec, rs, rows, now)


def last_judgement(db: Database, model: str) -> dict[str, Any] | None:
    """The controller's last judgement of the model's rollout (any master process)."""
    text = db.get_meta(JUDGEMENT_KEY + model)
    return None if not text else dict(json.loads(text))


class RolloutController:
    def __init__(self, state: RolloutInputs, interval_s: float) -> None:
        self.state = state
        self.interval_s = interval_s
        self._stop = threading.Event()
        self.last_error: str | None = None

    def start(self) -> RolloutController:
        threading.Thread(target=self._run, name="rollout", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick(time.time())
                self.last_error = None
            except Exception as exc:  # the bucket or SQLite down: try again next round
                self.last_error = str(exc)[:300]
                log.warning("rollout_tick_failed", error=self.last_error)

    def served_stable(self, model: str, now: float) -> int | None:
        """The newest complete version of ``model`` every live node serves now: what a spec
        set now adopts as stable (``rollout_plan.served_everywhere``)."""
        catalog = self.state.catalog()
        complete = catalog.complete_versions(model) if catalog else []
        with self.state.index.fleet(self.state.db, now) as fleet:
            live = sorted(fleet.serving(model_kind(catalog, model)))
            available = {v: set(ns) for v, ns in fleet.available.get(model, {}).items()}
        return served_everywhere(complete, live, available)

    def plan(self, policy: Policy, now: float) -> dict[str, Step]:
        s = self.state
        catalog = s.catalog()
        steps: dict[str, Step] = {}
        with s.index.fleet(s.db, now) as fleet:
            for model in sorted(set(policy.models) | (set(catalog.models) if catalog else set())):
                spec = policy.rollout_spec(model)
                if spec is None:
                    continue
                # a container model's nodes: those whose gateway reports its /ping
                live = sorted(fleet.serving(model_kind(catalog, model)))
                complete = catalog.complete_versions(model) if catalog else []
                available = {v: set(ns) for v, ns in fleet.available.get(model, {}).items()}
                failed = {v: dict(f) for v, f in fleet.failed.get(model, {}).items()}
                mp = policy.for_model(model)
                view = ModelFleet(model, spec, mp, complete, live, available, failed)
                rs = mp.rollout_state
                judged = None
                if rs is not None and rs.status == "baking" and mp.pin is None:
                    judged = judge(s.telemetry, model, spec, rs, now)
                    s.db.set_meta(JUDGEMENT_KEY + model, json.dumps(judged.to_json()))
                nxt = step(view, judged, now)
                if nxt is not None:
                    steps[model] = nxt
        return steps

    def tick(self, now: float) -> dict[str, Step]:
        policy, _generation = self.state.policies.read()
        steps = self.plan(policy, now)
        if not steps:
            return {}
        based_on = {m: policy.for_model(m).rollout_state for m in steps}

        def change(p: Policy) -> Policy:
            for model, st in steps.items():
                mp = p.for_model(model)
                if mp.rollout_state != based_on[model]:
                    continue  # someone else moved it first: the next round plans again
                p = p.with_model(model, apply(mp, st))
            return p

        _policy, generation, written = self.state.policies.update(change)
        if written:
            self.state.policy_written(_policy, generation)
            for model, st in steps.items():
                self.record(model, st, generation)
        return steps

    def record(self, model: str, st: Step, generation: int) -> None:
        detail: dict[str, Any] = {
            "version": st.state.version,
            "previous": st.state.previous,
            "stage": st.state.stage,
            "nodes": list(st.state.nodes),
            "status": st.state.status,
            "reason": st.state.reason,
            "generation": generation,
        }
        if st.reject is not None:
            detail["rejected"] = st.reject
        if st.judgement is not None:
            detail["judgement"] = st.judgement.to_json()
        self.state.db.add_event("audit", st.event, model=model, detail=detail)
        level = "warning" if st.reject is not None else "info"
        brief = {k: v for k, v in detail.items() if k != "judgement"}
        if st.judgement is not None:
            brief["basis"] = st.judgement.basis()
        getattr(log, level)(st.event, model=model, **brief)
