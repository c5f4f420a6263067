"""Staged rollouts (pure: no I/O): the spec, the state the master writes into the policy, which
nodes are on the new version, and the health decision.

A model (or ``defaults``) may carry a rollout spec::

    "rollout": {"canary_nodes": 1, "waves": [0.25, 1.0], "bake_s": 300,
                "max_error_rate": 0.01, "max_p99_ratio": 1.5, "min_requests": 200}

and, for the judge (``modelsync.judge``; each has a default, so old specs parse as they are):
``max_client_error_increase`` (0.05), ``confidence`` (0.99), ``warmup_s`` (a tenth of ``bake_s``,
at most 30 s), ``max_wait_s`` (4 x ``bake_s``) and ``on_insufficient`` ("pause" or "promote").
The old limits keep their names with a relative meaning: ``max_error_rate`` is the tolerated
increase of the server-error rate over the baseline (and the server-error rate itself when there
is no baseline traffic), ``max_p99_ratio`` the tolerated ratio of a tail quantile (p99 when the
samples support it, else p95, p90 or p50), ``min_requests`` the floor of the new side's requests.

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

from modelsync.judge import Limits

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
    "max_client_error_increase": (0, 1, False),
    "confidence": (0.5, 0.9999, False),
    "warmup_s": (0, 86400, False),
    "max_wait_s": (0, 30 * 86400, False),
}
# name -> the values it may take (the one home of the spec's choices, as SPEC_BOUNDS)
SPEC_CHOICES: dict[str, tuple[str, ...]] = {"on_insufficient": ("pause", "promote")}
_SPEC_KEYS = {*SPEC_BOUNDS, *SPEC_CHOICES, "waves"}
# keys a node of an older modelsync does not know: written into the policy only when set, so a
# spec that leaves them at their defaults stays readable by every node during an upgrade
_JUDGE_KEYS = (
    "max_client_error_increase",
    "confidence",
    "warmup_s",
    "max_wait_s",
    "on_insufficient",
)
MAX_WARMUP_S = 30.0  # the default warmup: a tenth of the bake, at most this
WAIT_BAKES = 4  # the default max_wait_s: this many bakes


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
    max_client_error_increase: float = 0.05
    confidence: float = 0.99
    warmup_s: float | None = None  # None: a tenth of bake_s, at most MAX_WARMUP_S
    max_wait_s: float | None = None  # None: WAIT_BAKES x bake_s
    on_insufficient: str = "pause"  # one of SPEC_CHOICES["on_insufficient"]

    def stages(self) -> int:
        """The canary stage and one per wave."""
        return 1 + len(self.waves)

    @property
    def warmup(self) -> float:
        """Seconds after a stage's nodes all serve the new version that are not judged: the
        first requests after a load are slow on any server (lazy initialisation, allocator
        growth, caches), and they are not the steady state a bake is about."""
        return min(MAX_WARMUP_S, self.bake_s / 10) if self.warmup_s is None else self.warmup_s

    @property
    def max_wait(self) -> float:
        """Seconds after a stage began baking by which it must have been judged."""
        return WAIT_BAKES * self.bake_s if self.max_wait_s is None else self.max_wait_s

    def limits(self) -> Limits:
        """What the judge allows (``modelsync.judge.judge_sides``)."""
        return Limits(
            max_server_error_increase=self.max_error_rate,
            max_client_error_increase=self.max_client_error_increase,
            max_latency_ratio=self.max_p99_ratio,
            min_requests=self.min_requests,
            confidence=self.confidence,
        )

    def to_json(self) -> dict[str, Any]:
        """The spec as written in the policy: the judge's keys only when they are set (see
        ``_JUDGE_KEYS``)."""
        doc: dict[str, Any] = {
            "canary_nodes": self.canary_nodes,
            "waves": list(self.waves),
            "bake_s": self.bake_s,
            "max_error_rate": self.max_error_rate,
            "max_p99_ratio": self.max_p99_ratio,
            "min_requests": self.min_requests,
        }
        default = RolloutSpec()
        for key in _JUDGE_KEYS:
            value = getattr(self, key)
            if value is not None and value != getattr(default, key):
                doc[key] = value
        return doc

    def full_json(self) -> dict[str, Any]:
        """Every key, the judge's too (None: derived from ``bake_s``); of ``RolloutSpec()``, what
        leaving each out of a spec means."""
        return {**self.to_json(), **{key: getattr(self, key) for key in _JUDGE_KEYS}}

    def effective_json(self) -> dict[str, Any]:
        """Every setting as the judge applies it (derived ones computed)."""
        return {**self.full_json(), "warmup_s": self.warmup, "max_wait_s": self.max_wait}


def spec_schema() -> dict[str, Any]:
    """The rollout spec as JSON Schema (the API's document), from the same bounds."""
    props: dict[str, Any] = {
        key: {"type": "integer" if integer else "number", "minimum": lo, "maximum": hi}
        for key, (lo, hi, integer) in SPEC_BOUNDS.items()
    }
    for key, choices in SPEC_CHOICES.items():
        props[key] = {"type": "string", "enum": list(choices)}
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
    for key, choices in SPEC_CHOICES.items():
        if key in doc and doc[key] not in choices:
            raise RolloutError(f"{where}.{key}: expected one of {list(choices)}, got {doc[key]!r}")
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
        max_client_error_increase=float(
            _number(full, "max_client_error_increase", where)
            if "max_client_error_increase" in full
            else RolloutSpec.max_client_error_increase
        ),
        confidence=float(
            _number(full, "confidence", where) if "confidence" in full else RolloutSpec.confidence
        ),
        warmup_s=float(_number(full, "warmup_s", where)) if "warmup_s" in full else None,
        max_wait_s=float(_number(full, "max_wait_s", where)) if "max_wait_s" in full else None,
        on_insufficient=str(full.get("on_insufficient", RolloutSpec.on_insufficient)),
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
