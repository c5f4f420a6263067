"""The policy document (pure: no I/O): what each model should serve.

    {"schema": 1,
     "defaults": {"keep_versions": 1},
     "models": {"ranker": {"keep_versions": 2, "pin": null,
                           "labels": {"stable": 41, "canary": 42}, "disabled": false}}}

Served set of a model = ``{pin}`` if pinned, else its newest ``keep_versions`` complete versions,
plus label targets; nothing for a disabled model. A pin or label whose target is not a complete
version is reported and left out: a pin falls back to the newest versions, so a bad pin never
empties a model that is serving.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelsync.layout import is_version, model_name_problem
from modelsync.rollout import (
    RolloutError,
    RolloutSpec,
    RolloutState,
    node_versions,
    parse_spec,
    parse_state,
)

SCHEMA = 1
LABEL_PATTERN = r"[A-Za-z][A-Za-z0-9_.-]{0,63}"
LABEL_RE = re.compile(LABEL_PATTERN + r"\Z")
MAX_KEEP_VERSIONS = 1000
MAX_REJECTED = 1000
_MODEL_KEYS = {"keep_versions", "pin", "labels", "disabled", "rollout", "rollout_state", "rejected"}


class PolicyError(ValueError):
    """The policy document is malformed; the message says where."""


@dataclass(frozen=True)
class ModelPolicy:
    keep_versions: int | None = None
    pin: int | None = None
    labels: Mapping[str, int] = field(default_factory=dict)
    disabled: bool = False
    rollout: RolloutSpec | None = None  # None: the defaults' (or all nodes at once)
    rollout_state: RolloutState | None = None  # written by the master's rollout controller
    rejected: frozenset[int] = frozenset()  # never served until an operator clears them

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "pin": self.pin,
            "labels": dict(sorted(self.labels.items())),
            "disabled": self.disabled,
        }
        if self.keep_versions is not None:
            doc["keep_versions"] = self.keep_versions
        if self.rollout is not None:
            doc["rollout"] = self.rollout.to_json()
        if self.rollout_state is not None:
            doc["rollout_state"] = self.rollout_state.to_json()
        if self.rejected:
            doc["rejected"] = sorted(self.rejected)
        return doc

    @property
    def is_default(self) -> bool:
        return self == ModelPolicy()


@dataclass(frozen=True)
class Policy:
    default_keep_versions: int = 1
    models: Mapping[str, ModelPolicy] = field(default_factory=dict)
    schema: int = SCHEMA
    default_rollout: RolloutSpec | None = None

    def rollout_spec(self, model: str) -> RolloutSpec | None:
        """The model's staged-rollout spec (its own, else the defaults'); None: all at once."""
        mp = self.for_model(model)
        return mp.rollout if mp.rollout is not None else self.default_rollout

    def rollout_in_force(self, model: str) -> RolloutState | None:
        """The model's rollout state, if a spec still applies to it: a state left behind after
        its spec was removed steers no node (all nodes at once again)."""
        state = self.for_model(model).rollout_state
        return None if self.rollout_spec(model) is None else state

    def for_model(self, model: str) -> ModelPolicy:
        return self.models.get(model, ModelPolicy())

    def keep_versions(self, model: str) -> int:
        kv = self.for_model(model).keep_versions
        return self.default_keep_versions if kv is None else kv

    def with_model(self, model: str, mp: ModelPolicy) -> Policy:
        models = dict(self.models)
        if mp.is_default:
            models.pop(model, None)
        else:
            models[model] = mp
        return replace(self, models=models)

    def to_json(self) -> dict[str, Any]:
        defaults: dict[str, Any] = {"keep_versions": self.default_keep_versions}
        if self.default_rollout is not None:
            defaults["rollout"] = self.default_rollout.to_json()
        return {
            "schema": self.schema,
            "defaults": defaults,
            "models": {m: mp.to_json() for m, mp in sorted(self.models.items())},
        }


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_version(value: object, where: str) -> int:
    if not is_version(value):
        raise PolicyError(f"{where}: expected a positive integer version, got {value!r}")
    return value  # type: ignore[return-value]


def check_keep_versions(value: object, where: str) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_KEEP_VERSIONS:  # type: ignore[operator]
        raise PolicyError(
            f"{where}: expected an integer from 1 to {MAX_KEEP_VERSIONS}, got {value!r}"
        )
    return value  # type: ignore[return-value]


def check_label(label: str, where: str = "label") -> str:
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise PolicyError(
            f"{where}: bad label {label!r}: want a letter then up to 63 of [A-Za-z0-9_.-]"
        )
    return label


def parse_model_policy(doc: object, where: str) -> ModelPolicy:
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: expected an object, got {type(doc).__name__}")
    unknown = set(doc) - _MODEL_KEYS
    if unknown:
        raise PolicyError(
            f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_MODEL_KEYS)}"
        )
    keep = doc.get("keep_versions")
    pin = doc.get("pin")
    labels = doc.get("labels")
    labels = {} if labels is None else labels
    disabled = doc.get("disabled", False)
    if not isinstance(labels, dict):
        raise PolicyError(f"{where}.labels: expected an object")
    if not isinstance(disabled, bool):
        raise PolicyError(f"{where}.disabled: expected true or false, got {disabled!r}")
    rejected = doc.get("rejected") or []
    if not isinstance(rejected, list) or len(rejected) > MAX_REJECTED:
        raise PolicyError(f"{where}.rejected: expected a list of versions")
    try:
        rollout = (
            None if doc.get("rollout") is None else parse_spec(doc["rollout"], f"{where}.rollout")
        )
        state = (
            None
            if doc.get("rollout_state") is None
            else parse_state(doc["rollout_state"], f"{where}.rollout_state")
        )
    except RolloutError as exc:
        raise PolicyError(str(exc)) from None
    return ModelPolicy(
        keep_versions=None if keep is None else check_keep_versions(keep, f"{where}.keep_versions"),
        pin=None if pin is None else check_version(pin, f"{where}.pin"),
        labels={
            check_label(k, f"{where}.labels"): check_version(v, f"{where}.labels.{k}")
            for k, v in labels.items()
        },
        disabled=disabled,
        rollout=rollout,
        rollout_state=state,
        rejected=frozenset(check_version(v, f"{where}.rejected") for v in rejected),
    )


def parse_policy(data: bytes | str | Mapping[str, Any]) -> Policy:
    """Parse and validate; raises PolicyError naming the first bad field."""
    if isinstance(data, bytes | str):
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PolicyError(f"not valid JSON: {exc}") from None
    else:
        doc = data
    if not isinstance(doc, dict):
        raise PolicyError("policy: expected a JSON object")
    unknown = set(doc) - {"schema", "defaults", "models"}
    if unknown:
        raise PolicyError(f"policy: unknown keys {sorted(unknown)}")
    schema = doc.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise PolicyError(f"schema: unsupported schema {schema!r}, this modelsync reads {SCHEMA}")
    defaults = doc.get("defaults")
    defaults = {} if defaults is None else defaults
    if not isinstance(defaults, dict) or set(defaults) - {"keep_versions", "rollout"}:
        raise PolicyError("defaults: expected an object with keep_versions and/or rollout")
    default_keep = check_keep_versions(defaults.get("keep_versions", 1), "defaults.keep_versions")
    try:
        default_rollout = (
            None
            if defaults.get("rollout") is None
            else parse_spec(defaults["rollout"], "defaults.rollout")
        )
    except RolloutError as exc:
        raise PolicyError(str(exc)) from None
    models = doc.get("models")
    models = {} if models is None else models
    if not isinstance(models, dict):
        raise PolicyError("models: expected an object")
    parsed: dict[str, ModelPolicy] = {}
    for name, mdoc in models.items():
        problem = model_name_problem(name)
        if problem:
            raise PolicyError(f"models: {problem}")
        parsed[name] = parse_model_policy(mdoc, f"models.{name}")
    return Policy(
        default_keep_versions=default_keep, models=parsed, default_rollout=default_rollout
    )


def dump_policy(policy: Policy) -> bytes:
    return (json.dumps(policy.to_json(), indent=2, sort_keys=False) + "\n").encode()


@dataclass(frozen=True)
class ServedSet:
    versions: frozenset[int]
    labels: Mapping[str, int]
    problems: tuple[str, ...] = ()


def served_set(
    model: str, complete: Iterable[int], policy: Policy, node_id: str | None = None
) -> ServedSet:
    """The versions of ``model`` that should be served, from its complete versions; on the node
    ``node_id`` when a staged rollout splits the fleet (None: the fleet's final target).

    Rejected versions are never served (a pin, the operator's escape hatch, still is); while a
    rollout is under way only the nodes of its stage get the new version."""
    mp = policy.for_model(model)
    if mp.disabled:
        return ServedSet(frozenset(), {})
    everything = set(complete)
    if mp.pin is not None and mp.pin in everything:
        return _with_labels(model, {mp.pin}, everything, mp, [])
    allowed = node_versions(everything - mp.rejected, policy.rollout_in_force(model), node_id)
    available = sorted(allowed, reverse=True)
    problems: list[str] = []
    if mp.pin is not None:
        problems.append(
            f"{model}: pin {mp.pin} is not a complete version in the bucket; "
            "serving the newest versions instead"
        )
    return _with_labels(
        model, set(available[: policy.keep_versions(model)]), everything, mp, problems
    )


def _with_labels(
    model: str, chosen: set[int], complete: set[int], mp: ModelPolicy, problems: list[str]
) -> ServedSet:
    """Label targets are served too (an operator's explicit choice, rollout or not)."""
    labels: dict[str, int] = {}
    for label, target in sorted(mp.labels.items()):
        if target in complete:
            chosen.add(target)
            labels[label] = target
        else:
            problems.append(
                f"{model}: label {label!r} -> {target} is not a complete version "
                "in the bucket; label left out"
            )
    return ServedSet(frozenset(chosen), labels, tuple(problems))


def fetch_set(
    model: str, complete: Iterable[int], policy: Policy, node_id: str | None = None
) -> frozenset[int]:
    """What a node keeps on disk: its served set, plus the version a staged rollout is moving
    to (fetched ahead, so a wave that reaches the node swaps without a download)."""
    versions = set(complete)
    served = set(served_set(model, versions, policy, node_id).versions)
    state = policy.rollout_in_force(model)
    if state is not None and state.active and state.version in versions:
        served.add(state.version)
    return frozenset(served)
