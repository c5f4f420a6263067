"""Staged rollouts (pure: no I/O): the spec, the state the master writes into the policy, which
nodes are on the new version, and the health decision.

A model (or ``defaults``) may carry a rollout spec::

    "rollout": {"canary_nodes": 1, "waves": [0.25, 1.0], "bake_s": 300,
                "max_error_rate": 0.01, "max_p99_ratio": 1.5, "min_requests": 200}

The master drives a rollout by writing its state into the policy (``rollout_state``): the new
version, the previous one, the stage (0 = canary, then one per wave), the nodes now on the new
version, the status and why. Nodes decide alone from the policy (``policy.served_set`` with the
node's id): a node listed in the state serves the new version, every other node stays on the
previous one. So with the master down a rollout freezes where it is.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

ACTIVE = ("validating", "baking", "paused")  # a rollout is under way: nodes are split
STATUSES = (*ACTIVE, "complete", "rolled_back")
MAX_HISTORY = 30
MAX_WAVES = 10
# The one home of the spec's bounds: ``parse_spec`` checks them, ``spec_schema`` publishes them.
# name -> (lowest, highest, whole numbers only)
SPEC_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "canary_nodes": (1, 10_000, True),
    "bake_s": (0, 7 * 86400, False),
    "max_error_rate": (0, 1, False),
    "max_p99_ratio": (1, 1000, False),
    "min_requests": (0, 10**9, True),
}
_SPEC_KEYS = {*SPEC_BOUNDS, "waves"}


class RolloutError(ValueError):
    """A rollout spec or state is malformed; the message says where."""


@dataclass(frozen=True)
class RolloutSpec:
    canary_nodes: int = 1
    waves: tuple[float, ...] = (0.25, 1.0)
    bake_s: float = 300.0
    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5
    min_requests: int = 200

    def stages(self) -> int:
        """The canary stage and one per wave."""
        return 1 + len(self.waves)

    def to_json(self) -> dict[str, Any]:
        return {
            "canary_nodes": self.canary_nodes,
            "waves": list(self.waves),
            "bake_s": self.bake_s,
            "max_error_rate": self.max_error_rate,
            "max_p99_ratio": self.max_p99_ratio,
            "min_requests": self.min_requests,
        }


def spec_schema() -> dict[str, Any]:
    """The rollout spec as JSON Schema (the API's document), from the same bounds."""
    props: dict[str, Any] = {
        key: {"type": "integer" if integer else "number", "minimum": lo, "maximum": hi}
        for key, (lo, hi, integer) in SPEC_BOUNDS.items()
    }
    props["waves"] = {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_WAVES,
        "items": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
    }
    return {"type": "object", "additionalProperties": False, "properties": props}


def _number(doc: Mapping[str, Any], key: str, where: str) -> Any:
    lo, hi, integer = SPEC_BOUNDS[key]
    value = doc[key]
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not integer or isinstance(value, int))
    )
    if not ok or not math.isfinite(value) or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise RolloutError(f"{where}.{key}: expected {kind} from {lo:g} to {hi:g}, got {value!r}")
    return value


def parse_spec(doc: object, where: str = "rollout") -> RolloutSpec:
    if not isinstance(doc, dict):
        raise RolloutError(f"{where}: expected an object")
    unknown = set(doc) - _SPEC_KEYS
    if unknown:
        raise RolloutError(
            f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_SPEC_KEYS)}"
        )
    full = {**RolloutSpec().to_json(), **doc}
    waves = full["waves"]
    if (
        not isinstance(waves, list)
        or not 1 <= len(waves) <= MAX_WAVES
        or not all(
            isinstance(w, int | float) and not isinstance(w, bool) and 0 < w <= 1 for w in waves
        )
    ):
        raise RolloutError(f"{where}.waves: expected 1-{MAX_WAVES} fractions in (0, 1]")
    if any(b < a for a, b in itertools.pairwise(waves)) or waves[-1] != 1:
        raise RolloutError(f"{where}.waves: must not decrease and must end at 1.0, got {waves}")
    return RolloutSpec(
        canary_nodes=_number(full, "canary_nodes", where),
        waves=tuple(float(w) for w in waves),
        bake_s=float(_number(full, "bake_s", where)),
        max_error_rate=float(_number(full, "max_error_rate", where)),
        max_p99_ratio=float(_number(full, "max_p99_ratio", where)),
        min_requests=_number(full, "min_requests", where),
    )


@dataclass(frozen=True)
class RolloutState:
    version: int
    previous: int | None
    status: str
    stage: int = 0
    nodes: tuple[str, ...] = ()
    started_at: float = 0.0
    stage_started_at: float = 0.0
    reason: str = ""
    paused_status: str | None = None  # what ``resume`` returns to
    history: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def moved(self, now: float, status: str, reason: str, **changes: Any) -> RolloutState:
        """The state after a step, with the step in the (bounded) history."""
        entry = {
            "at": round(now, 3),
            "status": status,
            "stage": changes.get("stage", self.stage),
            "nodes": len(changes.get("nodes", self.nodes)),
            "reason": reason,
        }
        return replace(
            self,
            status=status,
            reason=reason,
            history=(*self.history, entry)[-MAX_HISTORY:],
            **changes,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "previous": self.previous,
            "status": self.status,
            "stage": self.stage,
            "nodes": list(self.nodes),
            "started_at": self.started_at,
            "stage_started_at": self.stage_started_at,
            "reason": self.reason,
            "paused_status": self.paused_status,
            "history": [dict(h) for h in self.history],
        }


def parse_state(doc: object, where: str = "rollout_state") -> RolloutState:
    if not isinstance(doc, dict):
        raise RolloutError(f"{where}: expected an object")
    try:
        version, previous = doc["version"], doc.get("previous")
        status = doc["status"]
        nodes = doc.get("nodes", [])
        history = doc.get("history", [])
        ok = (
            isinstance(version, int)
            and version > 0
            and not isinstance(version, bool)
            and (previous is None or (isinstance(previous, int) and previous > 0))
            and status in STATUSES
            and isinstance(nodes, list)
            and all(isinstance(n, str) for n in nodes)
            and isinstance(history, list)
            and all(isinstance(h, dict) for h in history)
        )
        if not ok:
            raise RolloutError(f"{where}: malformed ({sorted(doc)})")
        paused = doc.get("paused_status")
        if paused is not None and paused not in ACTIVE:
            raise RolloutError(f"{where}.paused_status: unknown status {paused!r}")
        return RolloutState(
            version,
            previous,
            status,
            int(doc.get("stage", 0)),
            tuple(nodes),
            float(doc.get("started_at", 0.0)),
            float(doc.get("stage_started_at", 0.0)),
            str(doc.get("reason", ""))[:2000],
            paused,
            tuple(history[-MAX_HISTORY:]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, RolloutError):
            raise
        raise RolloutError(f"{where}: malformed: {exc}") from None


# --- which versions a node may serve ------------------------------------------------------------
def node_versions(
    complete: Iterable[int], state: RolloutState | None, node_id: str | None
) -> set[int]:
    """The complete versions a node may serve under a rollout: every node up to the stable
    version (the previous one while a rollout is under way or rolled back, the new one once it
    is complete); the nodes of the current stage also the new version. ``node_id`` None: the
    fleet's final target (the master's view)."""
    versions = set(complete)
    stable = (
        None if state is None else (state.version if state.status == "complete" else state.previous)
    )
    if state is None or stable is None:
        return versions  # nothing stable to hold the other nodes on
    allowed = {v for v in versions if v <= stable}
    if state.active and state.version in versions and (node_id is None or node_id in state.nodes):
        allowed.add(state.version)
    return allowed


# --- who is on the new version ------------------------------------------------------------------
def _order(model: str, version: int, nodes: Iterable[str]) -> list[str]:
    """A per-rollout order of the nodes: stable for a given model and version, spread over
    different nodes for different rollouts."""
    return sorted(
        set(nodes), key=lambda n: (hashlib.sha256(f"{model}/{version}/{n}".encode()).hexdigest(), n)
    )


def stage_size(spec: RolloutSpec, stage: int, live: int) -> int:
    """How many nodes are on the new version at ``stage`` (0 = canary): the canary count,
    then each wave's fraction of the live nodes rounded up; never fewer than before."""
    if live <= 0:
        return 0
    canary = min(spec.canary_nodes, live)
    if stage <= 0:
        return canary
    wave = spec.waves[min(stage, len(spec.waves)) - 1]
    return max(canary, min(live, math.ceil(wave * live - 1e-9)))


def stage_nodes(
    model: str,
    version: int,
    spec: RolloutSpec,
    stage: int,
    live: Sequence[str],
    already: Sequence[str] = (),
) -> tuple[str, ...]:
    """The nodes of ``stage``: those already on the new version (kept, even if they went
    stale), then live nodes in the rollout's order until the stage's size is reached."""
    chosen = list(dict.fromkeys(already))
    want = stage_size(spec, stage, len(set(live)))
    for node in _order(model, version, live):
        if len(chosen) >= want:
            break
        if node not in chosen:
            chosen.append(node)
    return tuple(chosen)


# --- the health decision ------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One version's figures over the bake window: requests, errors, p99 in ms."""

    requests: int = 0
    errors: int = 0
    p99_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Health:
    verdict: str  # "healthy" | "breach" | "unknown" (too few requests to judge)
    reason: str


def judge(
    spec: RolloutSpec, new: Sample, baseline: Sample, failures: Mapping[str, str] | None = None
) -> Health:
    """The new version against the baseline over the same minutes. A validation or load
    failure on a node of the stage, an error rate above ``max_error_rate`` or a p99 above
    ``max_p99_ratio`` times the baseline's (each with at least ``min_requests`` requests) is
    a breach."""
    if failures:
        node, why = sorted(failures.items())[0]
        return Health("breach", f"failed on {len(failures)} node(s), e.g. {node}: {why}")
    if new.requests < max(1, spec.min_requests):
        return Health(
            "unknown", f"{new.requests} requests so far; {spec.min_requests} needed to judge"
        )
    rate = new.error_rate or 0.0
    if rate > spec.max_error_rate:
        return Health(
            "breach",
            f"error rate {rate:.2%} over {new.requests} requests > "
            f"max_error_rate {spec.max_error_rate:.2%}",
        )
    if (
        new.p99_ms is not None
        and baseline.p99_ms
        and baseline.p99_ms > 0
        and baseline.requests >= max(1, spec.min_requests)
    ):
        ratio = new.p99_ms / baseline.p99_ms
        if ratio > spec.max_p99_ratio:
            return Health(
                "breach",
                f"p99 {new.p99_ms:.1f} ms is {ratio:.2f}x the previous "
                f"version's {baseline.p99_ms:.1f} ms > max_p99_ratio "
                f"{spec.max_p99_ratio:g}",
            )
    return Health(
        "healthy", f"error rate {rate:.2%}, p99 {new.p99_ms} ms over {new.requests} requests"
    )
