"""Since when TF Serving has reported each version AVAILABLE on this node.

TF Serving's GetModelStatus gives no times, so the config manager keeps them: the first pass
that sees a version AVAILABLE records it, a version that stops being AVAILABLE is forgotten, and
the record is kept on disk across restarts of the config manager. The master derives a model's
"converged since" from these reports (when the last node got the last target version).
"""

from __future__ import annotations

from collections.abc import Mapping

from config_manager.serving import AVAILABLE, VersionState
from modelsync.local import LocalLayout


class AvailabilityLog:
    def __init__(self, layout: LocalLayout) -> None:
        self.layout = layout
        self._since = layout.read_available_since()

    def update(self, states: Mapping[str, Mapping[int, VersionState]], now: float) -> None:
        """``states``: what TF Serving reported now, for the models it was asked about (the
        records of other models stay as they are)."""
        current = {
            (m, v) for m, vs in states.items() for v, s in vs.items() if s.state == AVAILABLE
        }
        since = {k: t for k, t in self._since.items() if k in current or k[0] not in states}
        since.update({k: now for k in current if k not in since})
        if since != self._since:
            self._since = since
            self.layout.write_available_since(since)

    def to_json(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for (m, v), t in sorted(self._since.items()):
            out.setdefault(m, {})[str(v)] = round(t, 3)
        return out
