"""What the config manager says about itself: its pass results, TF Serving's view, failures
(for ``/status`` and the heartbeat)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config_manager.checks import shadowed
from config_manager.serving import AVAILABLE, VersionState
from modelsync.reports import ConfigManagerStatus


@dataclass
class TickResult:
    tfserving_up: bool = False
    pushed: int = 0
    reload_errors: list[str] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)
    pruned: list[tuple[str, int]] = field(default_factory=list)
    settled: bool = True
    seconds: float = 0.0

    def to_json(self, at: float | None) -> dict[str, Any]:
        return {
            "at": at,
            "seconds": self.seconds,
            "pushed": self.pushed,
            "errors": self.reload_errors,
            "settled": self.settled,
            "pruned": [f"{m}/{v}" for m, v in self.pruned],
        }


def states_json(states: Mapping[str, Mapping[int, VersionState]]) -> dict[str, Any]:
    return {
        m: {
            str(v): {"state": s.state, "error_code": s.error_code, "error": s.error_message}
            for v, s in vs.items()
        }
        for m, vs in states.items()
    }


def failed_json(
    failed: Mapping[tuple[str, int], str], reasons: Mapping[tuple[str, int], str]
) -> dict[str, dict[str, str]]:
    """model -> version -> why it is left out."""
    out: dict[str, dict[str, str]] = {}
    for m, v in sorted(failed):
        out.setdefault(m, {})[str(v)] = reasons.get((m, v), "failed to load")
    return out


def status_doc(m: Any) -> dict[str, Any]:
    """``/status`` of a ``ConfigManager`` ``m``: everything it knows, shadows included."""
    with m._lock:
        last = m._last_tick
    return {
        "node_id": m.settings.node.node_id,
        "role": "config_manager",
        "tfserving": m.settings.tfserving,
        "tfserving_up": m._tfs_up,
        "config": m._reload.pushed_text,
        "tfserving_view": states_json(m._states),
        "last_reload": m._last_reload,
        "last_tick": None if last is None else last.to_json(m._last_tick_at),
        "failed": [
            {"model": model, "version": v, "fingerprint": fp}
            for (model, v), fp in m._reload.failed.items()
        ],
        "validations": {f"{model}/{v}": r for (model, v), r in sorted(m.gate.last.items())},
        "events": [e.to_json() for e in m.events.recent(50)],
    }


def summary_doc(m: Any) -> ConfigManagerStatus:
    """The heartbeat's status of a ``ConfigManager`` ``m``: the real models only (a version
    under validation is not served: its shadow is no model of anyone's)."""
    states = {name: vs for name, vs in m._states.items() if shadowed(name) is None}
    return {
        "available": {
            name: sorted(v for v, s in vs.items() if s.state == AVAILABLE)
            for name, vs in states.items()
            if any(s.state == AVAILABLE for s in vs.values())
        },
        "states": {name: {str(v): s.state for v, s in vs.items()} for name, vs in states.items()},
        "tfserving_up": m._tfs_up,
        "available_since": {
            name: vs for name, vs in m.availability.to_json().items() if shadowed(name) is None
        },
        "failed": failed_json(m._reload.failed, m._failure_reasons),
        "last_reload": m._last_reload,
    }
