"""What the config manager says about itself: its pass results, TF Serving's view, failures
(for ``/status`` and the heartbeat). It reads the daemon's public, typed parts
(:class:`Reported`), never its private fields."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from config_manager.availability import AvailabilityLog
from config_manager.checks import shadowed
from config_manager.gate import ValidationGate
from config_manager.observed import FailureBook, ServingView
from config_manager.planner import ReloadState
from config_manager.serving import AVAILABLE, VersionState
from config_manager.settings import ConfigManagerSettings
from config_manager.telemetry import TelemetryReader
from modelsync.events import EventLog
from modelsync.reports import ConfigManagerStatus, ReloadReport


@dataclass
class TickResult:
    tfserving_up: bool = False
    pushed: int = 0
    reload_errors: list[str] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)
    pruned: list[tuple[str, int]] = field(default_factory=list)
    settled: bool = True
    seconds: float = 0.0
    at: float | None = None  # when the pass ended (wall clock)

    def finish(self, started: float) -> TickResult:
        """``started``: the pass's start, monotonic."""
        self.seconds = round(time.monotonic() - started, 3)
        self.at = time.time()
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "seconds": self.seconds,
            "pushed": self.pushed,
            "errors": self.reload_errors,
            "settled": self.settled,
            "pruned": [f"{m}/{v}" for m, v in self.pruned],
        }


class Reported(Protocol):
    """What the report reads of a ``ConfigManager``."""

    settings: ConfigManagerSettings
    serving: ServingView
    failures: FailureBook
    reload_state: ReloadState
    availability: AvailabilityLog
    gate: ValidationGate
    events: EventLog
    last_tick: TickResult | None
    last_reload: ReloadReport | None
    telemetry: TelemetryReader


def states_json(states: Mapping[str, Mapping[int, VersionState]]) -> dict[str, Any]:
    return {
        m: {
            str(v): {"state": s.state, "error_code": s.error_code, "error": s.error_message}
            for v, s in vs.items()
        }
        for m, vs in states.items()
    }


def status_doc(m: Reported) -> dict[str, Any]:
    """``/status``: everything the config manager knows, shadows included."""
    last = m.last_tick
    return {
        "node_id": m.settings.node.node_id,
        "role": "config_manager",
        "tfserving": m.settings.tfserving,
        "tfserving_up": m.serving.up,
        "config": m.reload_state.pushed_text,
        "tfserving_view": states_json(m.serving.states),
        "last_reload": m.last_reload,
        "last_tick": None if last is None else last.to_json(),
        "failed": [
            {"model": model, "version": v, "fingerprint": fp}
            for (model, v), fp in m.failures.failed.items()
        ],
        "validations": {
            f"{model}/{v}": r.to_json() for (model, v), r in sorted(m.gate.last.items())
        },
        "events": [e.to_json() for e in m.events.recent(50)],
        "telemetry": m.telemetry.state(),
    }


def summary_doc(m: Reported) -> ConfigManagerStatus:
    """The heartbeat's status: the real models only (no shadows)."""
    states = m.serving.real_states()
    return {
        "available": {
            name: sorted(v for v, s in vs.items() if s.state == AVAILABLE)
            for name, vs in states.items()
            if any(s.state == AVAILABLE for s in vs.values())
        },
        "states": {name: {str(v): s.state for v, s in vs.items()} for name, vs in states.items()},
        "tfserving_up": m.serving.up,
        "available_since": {
            name: vs for name, vs in m.availability.to_json().items() if shadowed(name) is None
        },
        "failed": m.failures.by_model(),
        "last_reload": real_models(m.last_reload),
    }


def real_models(reload: ReloadReport | None) -> ReloadReport | None:
    """The last reload as the master sees it: the real models only (a validation's shadow name
    is no model name, and the master drops what is not one)."""
    if reload is None:
        return None
    models = {k: v for k, v in reload["models"].items() if shadowed(k) is None}
    return {**reload, "models": models}
