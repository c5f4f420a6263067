"""Decide what to download (pure: no I/O).

``plan_sync(remote, local, policy, node_id)``: for every model, the versions the policy has this
node keep (its served set, and the version a staged rollout is moving to: ``fetch_set``) that
are not on local disk with the same content, newest first. Nothing is ever planned for
deletion: pruning belongs to the config manager.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from modelsync.policy import Policy, fetch_set, served_set


@dataclass(frozen=True)
class Install:
    model: str
    version: int
    fingerprint: str
    reason: str  # "missing" | "changed" (the bucket's copy changed) | "unrecorded"


@dataclass(frozen=True)
class SyncPlan:
    installs: tuple[Install, ...]
    wanted: Mapping[str, frozenset[int]]
    problems: tuple[str, ...] = ()

    @property
    def idle(self) -> bool:
        return not self.installs


def plan_sync(
    remote: Mapping[str, Mapping[int, str]],
    local: Mapping[str, Mapping[int, str | None]],
    policy: Policy,
    node_id: str | None = None,
) -> SyncPlan:
    """``remote``: model -> complete version -> fingerprint. ``local``: model -> installed
    version -> fingerprint of its install record (None: a directory without a record)."""
    installs: list[Install] = []
    wanted: dict[str, frozenset[int]] = {}
    problems: list[str] = []
    for model in sorted(set(remote) | set(policy.models)):
        versions = remote.get(model, {})
        problems.extend(served_set(model, versions, policy, node_id).problems)
        keep = fetch_set(model, versions, policy, node_id)
        wanted[model] = keep
        have = local.get(model, {})
        for v in sorted(keep, reverse=True):
            fp = versions[v]
            if v not in have:
                installs.append(Install(model, v, fp, "missing"))
            elif have[v] is None:
                installs.append(Install(model, v, fp, "unrecorded"))
            elif have[v] != fp:
                installs.append(Install(model, v, fp, "changed"))
    return SyncPlan(tuple(installs), wanted, tuple(problems))
