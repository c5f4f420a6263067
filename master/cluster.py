"""The cluster view (pure: no I/O): bucket, policy and the nodes' reports joined per model.

A node reports, in its heartbeat status, what is on its disk (the puller: ``installed``) and
what TF Serving serves (the config manager: ``available``). Per model the view gives the target
versions (the policy's served set over the complete versions in the bucket) and, for each
version, on how many live nodes it is on disk and AVAILABLE; a model is converged when every
live serving node has every target version AVAILABLE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from master.db import NodeRow
from modelsync.catalog import Catalog
from modelsync.policy import Policy, served_set


def _versions(status: Mapping[str, Any], key: str, model: str) -> set[int]:
    raw = status.get(key) or {}
    if not isinstance(raw, dict):
        return set()
    out = set()
    for v in raw.get(model) or []:
        try:
            out.add(int(v))
        except (TypeError, ValueError):
            continue
    return out


def model_view(model: str, catalog: Catalog | None, policy: Policy,
               nodes: Iterable[NodeRow], now: float) -> dict[str, Any]:
    complete = catalog.complete_versions(model) if catalog else []
    in_bucket = sorted(catalog.models.get(model, {})) if catalog else []
    served = served_set(model, complete, policy)
    live = [n for n in nodes if n.state(now) == "live"]
    pullers = [n for n in live if n.role == "puller"]
    managers = [n for n in live if n.role == "config_manager"]
    on_disk = {n.node_id: _versions(n.status, "installed", model) for n in pullers}
    available = {n.node_id: _versions(n.status, "available", model) for n in managers}
    versions = sorted(set(in_bucket) | served.versions
                      | {v for vs in on_disk.values() for v in vs}
                      | {v for vs in available.values() for v in vs})
    per_version: dict[str, dict[str, Any]] = {}
    for v in versions:
        cv = catalog.models.get(model, {}).get(v) if catalog else None
        per_version[str(v)] = {
            "in_bucket": cv is not None, "complete": bool(cv and cv.complete),
            "bytes": cv.bytes if cv else None, "target": v in served.versions,
            "on_disk": sorted(n for n, vs in on_disk.items() if v in vs),
            "available": sorted(n for n, vs in available.items() if v in vs)}
    converged = bool(managers) and bool(served.versions) and all(
        served.versions <= vs for vs in available.values())
    mp = policy.for_model(model)
    return {
        "model": model,
        "policy": {"keep_versions": policy.keep_versions(model), "pin": mp.pin,
                   "labels": dict(mp.labels), "disabled": mp.disabled},
        "target_versions": sorted(served.versions),
        "labels": dict(served.labels),
        "problems": list(served.problems),
        "serving_nodes": len(managers),
        "converged": converged,
        "versions": per_version,
        "summary": {str(v): {"on_disk": len(per_version[str(v)]["on_disk"]),
                             "available": len(per_version[str(v)]["available"])}
                    for v in sorted(served.versions)},
    }


def all_models(catalog: Catalog | None, policy: Policy, nodes: Iterable[NodeRow]) -> list[str]:
    names = set(catalog.models) if catalog else set()
    names |= set(policy.models)
    for n in nodes:
        for key in ("installed", "available"):
            raw = n.status.get(key)
            if isinstance(raw, dict):
                names |= {str(m) for m in raw}
    return sorted(names)
