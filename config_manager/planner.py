"""When to reload TF Serving, and with what (pure: no I/O).

``plan_reload`` is the config manager's decision of one pass, from plain values: the versions on
disk (with their install fingerprints), what TF Serving reports, the policy, and what the last
passes did (``ReloadState``). It

- keeps the failure bookkeeping: a pushed version that TF Serving reports END with an error
  failed with its current content; it is left out until its content (fingerprint) changes;
- computes the served set (``desired_models``) and stages labels (TF Serving accepts a label
  only onto an AVAILABLE version, so a label whose version is still loading waits for a second
  reload: ``held_labels``);
- decides to push when the rendered config differs from the one pushed, or when TF Serving
  does not know a version the pushed config asks for (it restarted, or lost it).

TF Serving not answering (``states`` is None): nothing is pushed, the config file is still
rendered so it is current when TF Serving comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from config_manager.renderer import DesiredModel, desired_models, render_text, stage_labels
from config_manager.serving import AVAILABLE, END, VersionState
from modelsync.policy import Policy

Key = tuple[str, int]
States = Mapping[str, Mapping[int, VersionState]]


@dataclass(frozen=True)
class ReloadState:
    """What the config manager remembers between passes."""

    pushed_text: str | None = None
    pushed: Mapping[str, DesiredModel] = field(default_factory=dict)
    failed: Mapping[Key, str] = field(default_factory=dict)  # -> the fingerprint that failed


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


def available(states: States) -> dict[str, set[int]]:
    return {m: {v for v, s in vs.items() if s.state == AVAILABLE} for m, vs in states.items()}


def failed_by_model(failed: Mapping[Key, str]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for m, v in failed:
        out.setdefault(m, set()).add(v)
    return out


def plan_reload(installed: Mapping[str, Mapping[int, str]], states: States | None,
                policy: Policy, previous: ReloadState, model_root: str) -> ReloadPlan:
    """``installed``: per model, each version on disk that has an install record, with the
    record's fingerprint. ``states``: TF Serving's view per model, None if it did not answer."""
    # a version whose content changed since it failed gets another chance
    failed = {k: fp for k, fp in previous.failed.items()
              if installed.get(k[0], {}).get(k[1]) == fp}
    newly: list[tuple[str, VersionState]] = []
    if states is not None:
        for model, versions in sorted(states.items()):
            pushed_model = previous.pushed.get(model)
            pushed = set(pushed_model.versions) if pushed_model else set()
            for v, s in sorted(versions.items()):
                key = (model, v)
                fingerprint = installed.get(model, {}).get(v)
                if (s.state == END and s.error_code != 0 and v in pushed
                        and fingerprint is not None and key not in failed):
                    failed[key] = fingerprint
                    newly.append((model, s))
    on_disk = {m: set(vs) for m, vs in installed.items()}
    desired = desired_models(on_disk, failed_by_model(failed), policy, model_root)
    staged, held = stage_labels(desired, available(states or {}))
    text = render_text(staged)
    restarted = states is not None and _restarted(previous, states, staged)
    push = states is not None and (text != previous.pushed_text or restarted)
    return ReloadPlan(desired, staged, text, push, restarted, held, failed, tuple(newly))


def _restarted(previous: ReloadState, states: States, staged: Mapping[str, DesiredModel]) -> bool:
    if previous.pushed_text is None:
        return False
    for name, dm in previous.pushed.items():
        if name in staged and not set(dm.versions) <= set(states.get(name, {})):
            return True
    return False


def after_push(previous: ReloadState, plan: ReloadPlan) -> ReloadState:
    """The state once ``plan``'s config was accepted by TF Serving."""
    return ReloadState(plan.text, dict(plan.staged), dict(plan.failed))


def keep_failures(previous: ReloadState, plan: ReloadPlan) -> ReloadState:
    """The state when nothing was pushed: only the failure bookkeeping moves on."""
    return ReloadState(previous.pushed_text, previous.pushed, dict(plan.failed))
