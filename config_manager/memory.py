"""Memory-safe swaps (pure: no I/O).

TF Serving loads a new version before it unloads the old one (availability preserving), so
for a moment both are in memory: a model bigger than half the node's memory is OOM-killed on
every swap (tensorflow/serving #2017). When ``MODELSYNC_MEMORY_LIMIT_BYTES`` is set and
``factor x (what is loaded + the new versions' size on disk)`` would exceed it, the model is
swapped unload-first on this node: first the model leaves the config (its old versions are
unloaded; the node reports itself not ready, so the load balancer drains it), then only its
new versions come back (validated first, under their shadow name). A staged rollout bounds
how many nodes do this at once: only the nodes of the current stage get the new version.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import replace

from config_manager.checks import shadowed
from config_manager.renderer import DesiredModel

Key = tuple[str, int]


def loaded_bytes(available: Mapping[str, Set[int]], sizes: Mapping[Key, int]) -> int:
    return sum(sizes.get((shadowed(m) or m, v), 0) for m, vs in available.items() for v in vs)


def unload_first(
    full: Mapping[str, DesiredModel],
    desired: Mapping[str, DesiredModel],
    available: Mapping[str, Set[int]],
    sizes: Mapping[Key, int],
    limit_bytes: int | None,
    factor: float,
    draining: Set[str],
) -> tuple[frozenset[str], dict[str, DesiredModel], set[str]]:
    """(models swapping unload-first, the desired config adjusted for them, models whose
    validation waits). ``full``: what should be served once everything is validated;
    ``desired``: what may be served now; ``available``: TF Serving's AVAILABLE versions."""
    swapping = set(draining)
    if limit_bytes is not None:
        loaded = loaded_bytes(available, sizes)
        for m, target_model in full.items():
            have = set(available.get(m, set()))
            new = [v for v in target_model.versions if v not in have]
            if m in swapping or not new or not have - set(target_model.versions):
                continue  # already swapping, nothing new, or nothing old to make room
            if factor * (loaded + sum(sizes.get((m, v), 0) for v in new)) > limit_bytes:
                swapping.add(m)
    out = dict(desired)
    waiting: set[str] = set()
    for m in sorted(swapping):
        target = set(full[m].versions) if m in full else set()
        have = set(available.get(m, set()))
        old = have - target
        if not target or (target <= have and not old):
            swapping.discard(m)  # done: the new versions serve (or nothing is wanted)
            continue
        if old:  # first the model leaves the config: its old versions unload
            out.pop(m, None)
            waiting.add(m)
            continue
        dm = desired.get(m)  # then only its new versions, once validated
        keep = tuple(v for v in (dm.versions if dm else ()) if v in target)
        if dm is not None and keep:
            out[m] = replace(
                dm, versions=keep, labels={k: v for k, v in dm.labels.items() if v in keep}
            )
        else:
            out.pop(m, None)
    return frozenset(swapping), out, waiting
