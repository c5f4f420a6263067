"""When to reload TF Serving, and with what (pure: no I/O).

``plan_reload`` is the config manager's decision of one pass, from plain values: what the pass
found on the node (``Observed``: the versions on disk with their install fingerprints, what TF
Serving reports, the validation verdicts), the policy, what the last passes did
(``ReloadState``) and the node's own settings (``PlanSettings``). It

- keeps the failure bookkeeping: a pushed version that TF Serving reports END with an error
  failed with its current content; it is left out until its content (fingerprint) changes;
- computes the served set (``desired_models``) and stages labels (TF Serving accepts a label
  only onto an AVAILABLE version, so a label whose version is still loading waits for a second
  reload: ``held_labels``);
- decides to push when the rendered config differs from the one pushed, or when TF Serving
  does not know a version the pushed config asks for (it restarted, or lost it);
- gives a pushed version at most ``load_timeout_s`` in START/LOADING: one still loading after
  that (TF Serving retrying a bad model, a load that hangs) counts as failed and is left out,
  so it never holds back the versions behind it;
- keeps every version out of the real model's config until it passed validation (``validated``,
  by fingerprint): one the node should serve but that is not validated yet is loaded under its
  shadow name (``checks.shadow_name``) for the validation, while the versions already validated
  keep serving; one that failed validation (``rejected``) is left out like a failed load.

TF Serving not answering (``states`` is None): nothing is pushed, the config file is still
rendered so it is current when TF Serving comes back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from config_manager.checks import shadow_name, shadowed
from config_manager.memory import unload_first
from config_manager.renderer import DesiredModel, desired_models, render_text, stage_labels
from config_manager.serving import AVAILABLE, END, VersionState
from modelsync.policy import Policy

LOADING_STATES = ("START", "LOADING")  # as TF Serving reports them (unknown: not counted)
DEADLINE_EXCEEDED = 4  # tensorflow/core/protobuf/error_codes.proto

Key = tuple[str, int]
States = Mapping[str, Mapping[int, VersionState]]


@dataclass(frozen=True)
class ReloadState:
    """What the config manager remembers between passes."""

    pushed_text: str | None = None
    pushed: Mapping[str, DesiredModel] = field(default_factory=dict)
    failed: Mapping[Key, str] = field(default_factory=dict)  # -> the fingerprint that failed
    loading_since: Mapping[Key, float] = field(default_factory=dict)  # pushed, not loaded yet
    swapping: frozenset[str] = frozenset()  # models swapping unload-first (memory.py)


@dataclass(frozen=True)
class ReloadPlan:
    desired: Mapping[str, DesiredModel]  # what should be served, labels included
    staged: Mapping[str, DesiredModel]  # what to push now: labels only onto AVAILABLE versions
    text: str  # ``staged`` as a ModelServerConfig text proto
    push: bool
    restarted: bool  # TF Serving lost versions a config pushed earlier asked for
    held_labels: bool  # a label waits for its version: reload again once it is AVAILABLE
    failed: Mapping[Key, str]  # the new failure bookkeeping
    newly_failed: tuple[tuple[str, VersionState], ...] = ()  # (model, its failed state)
    loading_since: Mapping[Key, float] = field(default_factory=dict)
    pending: tuple[Key, ...] = ()  # to validate, under their shadow names in ``staged``
    swapping: frozenset[str] = frozenset()  # unload-first on this node: not ready meanwhile


def available(states: States) -> dict[str, set[int]]:
    return {m: {v for v, s in vs.items() if s.state == AVAILABLE} for m, vs in states.items()}


def failed_by_model(failed: Mapping[Key, str]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for m, v in failed:
        out.setdefault(m, set()).add(v)
    return out


@dataclass(frozen=True)
class Observed:
    """What one pass found on the node."""

    # per model, each version on disk that has an install record, with the record's fingerprint
    installed: Mapping[str, Mapping[int, str]]
    states: States | None  # TF Serving's view per model; None: it did not answer
    now: float = 0.0  # monotonic: the load clock of pushed versions
    # the fingerprints that passed / failed validation; validated None: no validation (every
    # version counts as validated)
    validated: Mapping[Key, str] | None = None
    rejected: Mapping[Key, str] = field(default_factory=dict)
    sizes: Mapping[Key, int] = field(default_factory=dict)  # bytes on disk (memory-safe swaps)


@dataclass(frozen=True)
class PlanSettings:
    """What every pass on this node plans with: where TF Serving finds the models, which node
    this is (its served set under a staged rollout), and the node's limits."""

    model_root: str  # as TF Serving sees it: the config's base paths
    node_id: str | None = None
    load_timeout_s: float = math.inf
    memory_limit_bytes: int | None = None  # None: no memory-safe swaps
    memory_factor: float = 2.0  # a loaded version's memory over its size on disk


@dataclass(frozen=True)
class _Failures:
    failed: dict[Key, str]  # -> the fingerprint that failed
    newly: tuple[tuple[str, VersionState], ...]
    loading_since: dict[Key, float]


def _book_failures(seen: Observed, previous: ReloadState, load_timeout_s: float) -> _Failures:
    """A pushed version TF Serving reports END with an error, or still loading after
    ``load_timeout_s``, failed with its current content; a version whose content changed since
    it failed gets another chance."""
    installed, states, now = seen.installed, seen.states, seen.now

    def current(key: Key, fp: str) -> bool:
        return installed.get(key[0], {}).get(key[1]) == fp

    failed = {k: fp for k, fp in previous.failed.items() if current(k, fp)}
    failed.update({k: fp for k, fp in seen.rejected.items() if current(k, fp)})
    newly: list[tuple[str, VersionState]] = []
    if states is None:
        return _Failures(failed, (), dict(previous.loading_since))
    loading: dict[Key, float] = {}
    for name, dm in sorted(previous.pushed.items()):
        model = shadowed(name) or name
        for v in dm.versions:
            key = (model, v)
            s = states.get(name, {}).get(v, VersionState(v, "UNKNOWN"))
            fingerprint = installed.get(model, {}).get(v)
            if fingerprint is None or key in failed:
                continue
            if s.state == END and s.error_code != 0:
                failed[key] = fingerprint
                newly.append((model, s))
            elif s.state in LOADING_STATES:
                since = previous.loading_since.get((name, v), now)
                if now - since > load_timeout_s:
                    failed[key] = fingerprint
                    why = (
                        f"still {s.state} {now - since:.0f} s after it was pushed "
                        f"(MODELSYNC_LOAD_TIMEOUT_S={load_timeout_s:g}); left out"
                    )
                    newly.append((model, VersionState(v, s.state, DEADLINE_EXCEEDED, why)))
                else:
                    loading[(name, v)] = since
    return _Failures(failed, tuple(newly), loading)


def plan_reload(
    seen: Observed, policy: Policy, previous: ReloadState, node: PlanSettings
) -> ReloadPlan:
    """The decision of one pass: what to serve, what to validate, whether to push."""
    installed, states = seen.installed, seen.states
    book = _book_failures(seen, previous, node.load_timeout_s)
    loading = dict(book.loading_since)
    on_disk = {m: set(vs) for m, vs in installed.items()}
    bad = failed_by_model(book.failed)
    full = desired_models(on_disk, bad, policy, node.model_root, node.node_id)
    pending: tuple[Key, ...] = ()
    if seen.validated is None:
        desired = full
    else:
        validated = seen.validated
        ok = {
            m: {v for v in vs if validated.get((m, v)) == installed[m][v]}
            for m, vs in on_disk.items()
        }
        desired = desired_models(ok, bad, policy, node.model_root, node.node_id)
        pending = tuple(
            (m, v)
            for m, dm in sorted(full.items())
            for v in dm.versions
            if v not in ok.get(m, set())
        )
    swapping, desired, waiting = unload_first(
        full,
        desired,
        available(states or {}),
        seen.sizes,
        node.memory_limit_bytes if states is not None else None,
        node.memory_factor,
        previous.swapping,
    )
    staged, held = stage_labels(desired, available(states or {}))
    shadows: dict[str, list[int]] = {}
    for m, v in pending:
        if m not in waiting:  # a model making room first validates once it has
            shadows.setdefault(m, []).append(v)
    for m, vs in shadows.items():
        staged[shadow_name(m)] = DesiredModel(shadow_name(m), full[m].base_path, tuple(vs))
    text = render_text(staged)
    restarted = states is not None and _restarted(previous, states, staged)
    push = states is not None and (text != previous.pushed_text or restarted)
    if push:  # the load clock of a version starts when it is pushed
        avail = available(states or {})
        for model, dm in staged.items():
            for v in dm.versions:
                if v not in avail.get(model, set()):
                    loading.setdefault((model, v), seen.now)
    return ReloadPlan(
        desired,
        staged,
        text,
        push,
        restarted,
        held,
        book.failed,
        book.newly,
        loading,
        pending,
        swapping,
    )


def _restarted(previous: ReloadState, states: States, staged: Mapping[str, DesiredModel]) -> bool:
    if previous.pushed_text is None:
        return False
    for name, dm in previous.pushed.items():
        if name in staged and not set(dm.versions) <= set(states.get(name, {})):
            return True
    return False


def after_push(previous: ReloadState, plan: ReloadPlan) -> ReloadState:
    """The state once ``plan``'s config was accepted by TF Serving."""
    return ReloadState(
        plan.text, dict(plan.staged), dict(plan.failed), dict(plan.loading_since), plan.swapping
    )


def keep_failures(previous: ReloadState, plan: ReloadPlan) -> ReloadState:
    """The state when nothing was pushed: only the bookkeeping moves on."""
    return ReloadState(
        previous.pushed_text,
        previous.pushed,
        dict(plan.failed),
        dict(plan.loading_since),
        plan.swapping,
    )
