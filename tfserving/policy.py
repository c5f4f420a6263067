"""Pure rules of the model server (no TensorFlow, gRPC or filesystem here).

- ``aspired_versions``: which versions of a model to serve, from the versions found on disk and
  the model's ``model_version_policy`` (latest N — the default is latest 1 —, all, specific).
- ``next_actions``: TF Serving's availability-preserving policy. A version that is no longer
  aspired is unloaded only when an aspired version is AVAILABLE, when nothing is aspired any more,
  or when more than one unaspired version is serving (the lowest goes first); new aspired versions
  are loaded, highest first. So a version swap never leaves a moment with nothing to serve, and
  if every new version fails to load the old one keeps serving.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_VERSION_DIR_RE = re.compile(r"[0-9]{1,19}\Z")


class State(enum.IntEnum):
    """ModelVersionStatus.State values, as in tensorflow_serving/apis/get_model_status.proto."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: frozenset[int] = frozenset()


def version_dirs(names: Iterable[str]) -> list[int]:
    """Directory names that are versions (non-negative int64), as TF Serving reads them."""
    out = []
    for n in names:
        if _VERSION_DIR_RE.match(n):
            v = int(n)
            if v < 2**63:
                out.append(v)
    return sorted(set(out))


def aspired_versions(found: Iterable[int], policy: VersionPolicy) -> frozenset[int]:
    present = sorted(set(found), reverse=True)
    if policy.kind == "all":
        return frozenset(present)
    if policy.kind == "specific":
        return frozenset(v for v in present if v in policy.versions)
    return frozenset(present[: max(1, policy.num_versions)])


@dataclass(frozen=True)
class Snapshot:
    """One version as the manager sees it when it decides the next actions."""

    version: int
    state: State
    aspired: bool
    failed: bool = False


@dataclass(frozen=True)
class Action:
    kind: str  # "load" | "unload"
    version: int


def next_actions(versions: Iterable[Snapshot], max_loads: int = 1) -> list[Action]:
    """What to do now for one model. Call again after every state change.

    ``max_loads`` bounds the loads started or running for this model, these included."""
    snaps = list(versions)
    aspired = [s for s in snaps if s.aspired]
    aspired_serving = any(s.state == State.AVAILABLE for s in aspired)
    unaspired_serving = sorted(
        s.version for s in snaps if not s.aspired and s.state == State.AVAILABLE
    )
    actions: list[Action] = []
    if unaspired_serving and (not aspired or aspired_serving or len(unaspired_serving) > 1):
        if aspired_serving or not aspired:
            actions.extend(Action("unload", v) for v in unaspired_serving)
        else:
            actions.append(Action("unload", unaspired_serving[0]))
    new = sorted(
        (s.version for s in aspired if s.state == State.UNKNOWN and not s.failed), reverse=True
    )
    in_progress = sum(1 for s in aspired if s.state in (State.START, State.LOADING))
    room = max(0, max_loads - in_progress)
    actions.extend(Action("load", v) for v in new[:room])
    return actions


@dataclass(frozen=True)
class Resolution:
    """The AVAILABLE version that answers a request, or TF Serving's error: ``code`` is ""
    when ``version`` is set, else the gRPC status name with ``message``."""

    version: int | None
    code: str = ""
    message: str = ""


def resolve_version(
    name: str,
    requested_version: int | None,
    label: str | None,
    available: Iterable[int],
    labels: Mapping[str, int],
) -> Resolution:
    """Pick the version a request asks for among the AVAILABLE ones, as TF Serving does:
    ``ServerCore::ServableRequestFromModelSpec`` and ``GetModelVersionForLabel``
    (model_servers/server_core.cc) turn the ModelSpec into ``Latest(name)`` or
    ``Specific(name, version)`` — an unknown label, of a known model or not, is
    INVALID_ARGUMENT — and the manager's handle lookup (core/basic_manager.cc) answers NOT_FOUND
    "Servable not found for request: ..." when no AVAILABLE version matches, also while a model
    has none loaded yet. ``available``/``labels`` are empty for a model not in the config."""
    if not name:
        return Resolution(None, "INVALID_ARGUMENT", "ModelSpec has no name specified.")
    if label:
        if label not in labels:
            return Resolution(
                None, "INVALID_ARGUMENT", f"Unrecognized servable version label: {label}"
            )
        requested_version = labels[label]
    avail = set(available)
    if requested_version is None:
        if avail:
            return Resolution(max(avail))
        request = f"Latest({name})"
    elif requested_version in avail:
        return Resolution(requested_version)
    else:
        request = f"Specific({name}, {requested_version})"
    return Resolution(None, "NOT_FOUND", f"Servable not found for request: {request}")
