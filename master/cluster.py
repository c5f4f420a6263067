"""The cluster view (pure: no I/O): the bucket, the policy and the fleet's reports per model.

A node reports what is on its disk (its puller: ``installed``) and what TF Serving serves (its
config manager: ``available``, with since when). Per model the view gives the target versions
(the policy's served set over the complete versions in the bucket) and, per version, the live
nodes with it on disk and AVAILABLE; a model is converged when every live serving node has every
target version AVAILABLE, and it has been since the last of them became AVAILABLE there.
"""

from __future__ import annotations

from typing import Any

from master.index import PULLER, Fleet
from modelsync.annotations import Annotations, notes
from modelsync.catalog import Catalog, CatalogVersion
from modelsync.policy import Policy, ServedSet, served_set


def _served(model: str, catalog: Catalog | None, policy: Policy) -> ServedSet:
    complete = catalog.complete_versions(model) if catalog else []
    return served_set(model, complete, policy)


def policy_json(model: str, policy: Policy) -> dict[str, Any]:
    mp = policy.for_model(model)
    return {
        "keep_versions": policy.keep_versions(model),
        "pin": mp.pin,
        "labels": dict(mp.labels),
        "disabled": mp.disabled,
    }


def converged_since(model: str, targets: dict[str, frozenset[int]], fleet: Fleet) -> float | None:
    """When the last serving node had the last of its targets AVAILABLE, from the nodes' own
    reports; None if a node did not say (a version is AVAILABLE, but since when is unknown)."""
    times = [fleet.available_since.get((model, v, n)) for n, vs in targets.items() for v in vs]
    if not times or any(t is None for t in times):
        return None
    return max(t for t in times if t is not None)


OUTSIDE = "\x00"  # a node id no node has: "a node outside the rollout's stage"


def node_targets(
    model: str, catalog: Catalog | None, policy: Policy, nodes: set[str]
) -> dict[str, frozenset[int]]:
    """What each node should serve: the same for every node, except while a staged rollout
    splits the fleet (the stage's nodes on the new version, the others on the previous)."""
    complete = catalog.complete_versions(model) if catalog else []
    state = policy.for_model(model).rollout_state
    outside = served_set(model, complete, policy, OUTSIDE).versions
    if state is None or not state.active:
        return {n: outside for n in nodes}
    inside = served_set(model, complete, policy, state.nodes[0] if state.nodes else OUTSIDE)
    members = set(state.nodes)
    return {n: inside.versions if n in members else outside for n in nodes}


def model_summary(
    model: str, catalog: Catalog | None, policy: Policy, fleet: Fleet
) -> dict[str, Any]:
    """Counts only (no node lists): what the tables of every model need."""
    served = _served(model, catalog, policy)
    kind = model_kind(catalog, model)
    pullers, serving = fleet.live(PULLER), fleet.serving(kind)
    on_disk = fleet.on_disk.get(model, {})
    available = fleet.available.get(model, {})
    targets = node_targets(model, catalog, policy, serving)
    converged = (
        bool(serving)
        and bool(served.versions)
        and all(n in available.get(v, set()) for n, vs in targets.items() for v in vs)
    )
    return {
        "model": model,
        "policy": policy_json(model, policy),
        "target_versions": sorted(served.versions),
        "labels": dict(served.labels),
        "problems": list(served.problems),
        "serving_nodes": len(serving),
        "converged": converged,
        "converged_since": converged_since(model, targets, fleet) if converged else None,
        "summary": {
            str(v): {
                "on_disk": len(on_disk.get(v, set()) & pullers),
                "available": len(available.get(v, set()) & serving),
            }
            for v in sorted(served.versions)
        },
        # what live nodes serve now (during a change: old and new)
        "serving_versions": sorted(v for v, ns in available.items() if ns & serving),
        "rollout": rollout_json(model, policy),
        "versions_in_bucket": sorted(catalog.models.get(model, {})) if catalog else [],
        # "container" when any of its versions is a container image (master.containers)
        "kind": kind,
    }


def model_kind(catalog: Catalog | None, model: str) -> str | None:
    """The model's kind: its newest version's (None: no version in the bucket)."""
    versions = catalog.models.get(model, {}) if catalog else {}
    return versions[max(versions)].kind if versions else None


def rollout_json(model: str, policy: Policy) -> dict[str, Any] | None:
    """The model's staged rollout in short (the tables' badge), or None."""
    rs = policy.for_model(model).rollout_state
    if rs is None:
        return None
    return {
        "status": rs.status,
        "version": rs.version,
        "previous": rs.previous,
        "stage": rs.stage,
        "reason": rs.reason,
    }


def registry_json(
    model: str, v: int, cv: CatalogVersion | None, annotations: Annotations | None
) -> dict[str, Any]:
    """Who published a version (its manifest), and its description and tags (the manifest's,
    or the operators' edits from the annotations in the bucket)."""
    publisher = cv.publisher if cv is not None else None
    note = annotations.get(model, v) if annotations is not None else None
    about = notes(cv.description if cv else "", cv.tags if cv else {}, note)
    return {"publisher": vars(publisher) if publisher is not None else None, **about.to_json()}


def model_view(
    model: str,
    catalog: Catalog | None,
    policy: Policy,
    fleet: Fleet,
    annotations: Annotations | None = None,
) -> dict[str, Any]:
    """One model in full: every version (who published it, its description and tags), and per
    version the nodes with it on disk, AVAILABLE, or failed (with why)."""
    view = model_summary(model, catalog, policy, fleet)
    pullers, serving = fleet.live(PULLER), fleet.serving(view["kind"])
    on_disk = {v: ns & pullers for v, ns in fleet.on_disk.get(model, {}).items()}
    available = {v: ns & serving for v, ns in fleet.available.get(model, {}).items()}
    failed = fleet.failed.get(model, {})
    targets = set(view["target_versions"])
    in_bucket = catalog.models.get(model, {}) if catalog else {}
    versions = sorted(
        set(in_bucket)
        | targets
        | {v for v, ns in on_disk.items() if ns}
        | {v for v, ns in available.items() if ns}
        | set(failed)
    )
    view["versions"] = {
        str(v): {
            "in_bucket": v in in_bucket,
            "complete": bool(v in in_bucket and in_bucket[v].complete),
            "kind": in_bucket[v].kind if v in in_bucket else None,
            "bytes": in_bucket[v].bytes if v in in_bucket else None,
            "target": v in targets,
            "manifest": in_bucket[v].manifest if v in in_bucket else None,
            "published_at": in_bucket[v].published_at if v in in_bucket else None,
            "on_disk": sorted(on_disk.get(v, set())),
            "available": sorted(available.get(v, set())),
            "failed": dict(sorted(failed.get(v, {}).items())),
            **registry_json(model, v, in_bucket.get(v), annotations),
        }
        for v in versions
    }
    return view


def all_models(catalog: Catalog | None, policy: Policy, fleet: Fleet) -> list[str]:
    names = set(catalog.models) if catalog else set()
    return sorted(names | set(policy.models) | fleet.models)


def node_counts(fleet: Fleet) -> dict[str, int]:
    """Nodes by state: a node is its node id; its daemons are roles under it."""
    counts = {"total": 0, "live": 0, "degraded": 0, "stale": 0}
    for node_id in fleet.roles:
        counts["total"] += 1
        counts[fleet.node_state(node_id)] += 1
    return counts
