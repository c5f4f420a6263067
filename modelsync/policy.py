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

from modelsync.layout import MAX_VERSION, model_name_problem

SCHEMA = 1
LABEL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
MAX_KEEP_VERSIONS = 1000
_MODEL_KEYS = {"keep_versions", "pin", "labels", "disabled"}


class PolicyError(ValueError):
    """The policy document is malformed; the message says where."""


@dataclass(frozen=True)
class ModelPolicy:
    keep_versions: int | None = None
    pin: int | None = None
    labels: Mapping[str, int] = field(default_factory=dict)
    disabled: bool = False

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"pin": self.pin, "labels": dict(sorted(self.labels.items())),
                               "disabled": self.disabled}
        if self.keep_versions is not None:
            doc["keep_versions"] = self.keep_versions
        return doc

    @property
    def is_default(self) -> bool:
        return self == ModelPolicy()


@dataclass(frozen=True)
class Policy:
    default_keep_versions: int = 1
    models: Mapping[str, ModelPolicy] = field(default_factory=dict)
    schema: int = SCHEMA

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
        return {"schema": self.schema,
                "defaults": {"keep_versions": self.default_keep_versions},
                "models": {m: mp.to_json() for m, mp in sorted(self.models.items())}}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_version(value: object, where: str) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_VERSION:  # type: ignore[operator]
        raise PolicyError(f"{where}: expected a positive integer version, got {value!r}")
    return value  # type: ignore[return-value]


def check_keep_versions(value: object, where: str) -> int:
    if not _is_int(value) or not 1 <= value <= MAX_KEEP_VERSIONS:  # type: ignore[operator]
        raise PolicyError(f"{where}: expected an integer from 1 to {MAX_KEEP_VERSIONS}, "
                          f"got {value!r}")
    return value  # type: ignore[return-value]


def check_label(label: str, where: str = "label") -> str:
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise PolicyError(f"{where}: bad label {label!r}: want a letter then up to 63 of "
                          "[A-Za-z0-9_.-]")
    return label


def parse_model_policy(doc: object, where: str) -> ModelPolicy:
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: expected an object, got {type(doc).__name__}")
    unknown = set(doc) - _MODEL_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown keys {sorted(unknown)}; allowed: "
                          f"{sorted(_MODEL_KEYS)}")
    keep = doc.get("keep_versions")
    pin = doc.get("pin")
    labels = doc.get("labels")
    labels = {} if labels is None else labels
    disabled = doc.get("disabled", False)
    if not isinstance(labels, dict):
        raise PolicyError(f"{where}.labels: expected an object")
    if not isinstance(disabled, bool):
        raise PolicyError(f"{where}.disabled: expected true or false, got {disabled!r}")
    return ModelPolicy(
        keep_versions=None if keep is None else check_keep_versions(keep,
                                                                    f"{where}.keep_versions"),
        pin=None if pin is None else check_version(pin, f"{where}.pin"),
        labels={check_label(k, f"{where}.labels"): check_version(v, f"{where}.labels.{k}")
                for k, v in labels.items()},
        disabled=disabled)


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
    if not isinstance(defaults, dict) or set(defaults) - {"keep_versions"}:
        raise PolicyError("defaults: expected an object with only keep_versions")
    default_keep = check_keep_versions(defaults.get("keep_versions", 1),
                                       "defaults.keep_versions")
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
    return Policy(default_keep_versions=default_keep, models=parsed)


def dump_policy(policy: Policy) -> bytes:
    return (json.dumps(policy.to_json(), indent=2, sort_keys=False) + "\n").encode()


@dataclass(frozen=True)
class ServedSet:
    versions: frozenset[int]
    labels: Mapping[str, int]
    problems: tuple[str, ...] = ()


def served_set(model: str, complete: Iterable[int], policy: Policy) -> ServedSet:
    """The versions of ``model`` that should be served, from its complete versions."""
    available = sorted(set(complete), reverse=True)
    mp = policy.for_model(model)
    if mp.disabled:
        return ServedSet(frozenset(), {})
    problems: list[str] = []
    chosen: set[int]
    if mp.pin is not None and mp.pin in available:
        chosen = {mp.pin}
    else:
        if mp.pin is not None:
            problems.append(f"{model}: pin {mp.pin} is not a complete version in the bucket; "
                            "serving the newest versions instead")
        chosen = set(available[: policy.keep_versions(model)])
    labels: dict[str, int] = {}
    for label, target in sorted(mp.labels.items()):
        if target in available:
            chosen.add(target)
            labels[label] = target
        else:
            problems.append(f"{model}: label {label!r} -> {target} is not a complete version "
                            "in the bucket; label left out")
    return ServedSet(frozenset(chosen), labels, tuple(problems))
