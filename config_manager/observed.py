"""What the config manager has seen, kept between passes: TF Serving's state and the failures.

Two small classes with typed public fields, owned by the daemon and read by its report
(``report.py``) and its heartbeat summary: :class:`ServingView` (is TF Serving up, since when is
it down, what it reports per version, how long it was down before it came back) and
:class:`FailureBook` (the versions left out of the config, with the content that failed and
why). The decisions stay in the pure planner; these only remember what happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from config_manager.checks import shadowed
from config_manager.planner import Key, available
from config_manager.serving import VersionState


@dataclass
class ServingView:
    """TF Serving as this node last saw it."""

    up: bool | None = None  # None: not asked yet
    down_since: float | None = None  # monotonic: when a call first failed
    states: dict[str, dict[int, VersionState]] = field(default_factory=dict)  # last answer
    last_downtime_s: float | None = None  # how long it was down, until a pass takes it

    def unreachable(self, now: float) -> bool:
        """A call failed at ``now`` (monotonic). True when that is news (it was up, or not
        asked yet): the daemon says so once, not on every pass."""
        news = self.up is not False
        if news:
            self.down_since = now
        self.up = False
        return news

    def answered(self, states: dict[str, dict[int, VersionState]], now: float) -> float | None:
        """TF Serving answered with ``states`` at ``now``; how long it was down, if it was."""
        back = None
        if self.up is False:
            back = self.last_downtime_s = round(now - (self.down_since or 0.0), 1)
        self.up = True
        self.states = states
        return back

    def take_downtime(self) -> float | None:
        """The downtime seen since the last pass, once: a restart found by this pass carries it
        (TF Serving lost the config because it was down that long)."""
        seen, self.last_downtime_s = self.last_downtime_s, None
        return seen

    def available(self) -> dict[str, set[int]]:
        return available(self.states)

    def real_states(self) -> dict[str, dict[int, VersionState]]:
        """The real models' states: a version under validation is not served, its shadow is no
        model of anyone's."""
        return {name: vs for name, vs in self.states.items() if shadowed(name) is None}


@dataclass
class FailureBook:
    """The versions left out of the config and why: a failed load (TF Serving's error, or the
    load timeout) or a failed validation (the gate's reason). ``failed`` follows the planner's
    ``ReloadState.failed`` after every pass: a version is in the book only while its content is
    the one that failed."""

    failed: dict[Key, str] = field(default_factory=dict)  # -> the fingerprint that failed
    reasons: dict[Key, str] = field(default_factory=dict)  # -> why

    def load_failed(self, key: Key, reason: str) -> None:
        self.reasons[key] = reason

    def settle(self, failed: Mapping[Key, str], gate_reasons: Mapping[Key, str]) -> None:
        """After a pass: what failed now, the load failures' reasons kept, the gate's added."""
        self.failed = dict(failed)
        self.reasons = {
            **{k: r for k, r in self.reasons.items() if k in self.failed},
            **gate_reasons,
        }

    def by_model(self) -> dict[str, dict[str, str]]:
        """model -> version -> why it is left out (the heartbeat's ``failed``)."""
        out: dict[str, dict[str, str]] = {}
        for m, v in sorted(self.failed):
            out.setdefault(m, {})[str(v)] = self.reasons.get((m, v), "failed to load")
        return out
