"""Request telemetry on a heartbeat: one model's figures (:class:`BeatModel`), and the outbox a
node daemon keeps them in until the master has them (pure but for a lock: no I/O).

The config manager (what its TF Serving answered) and the gateway (what it answered itself) send
the same document on their beats::

    {"start": 1700000000.0, "end": 1700000005.0, "models": {"ranker": {
        "seconds": 5.0, "requests": 120, "errors": {"INVALID_ARGUMENT": 2},
        "latency_us": {"le": [...], "n": [...], "sum": ...}, "reset": false,
        "versions": [41, 42],                      # AVAILABLE meanwhile (config manager)
        "by_version": {"42": {<the same interval keys>}, ...}}}}

``by_version`` is there only when the sender can tell versions apart (the compatible server's
extension metrics, :mod:`modelsync.telemetry.versions`; the gateway, which sees the version of
each answer); ``{}`` then means that no request reached a version. Merged per model, so a beat's
size is bounded by the models (and their versions), not the requests.

Each document also carries ``"boot"`` (random, one per sender process) and ``"seq"`` (1, 2, ...):
delivery is stop-and-wait, so a beat whose answer was lost (a timeout after the master had
recorded it) is sent again *unchanged*, and the master counts a ``(boot, seq)`` once
(:mod:`master.telemetry`). Without that, a slow master answer meant figures counted twice.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelsync.layout import is_version, parse_version
from modelsync.telemetry.errors import TelemetryError
from modelsync.telemetry.intervals import ModelInterval, merge_intervals
from modelsync.telemetry.versions import MAX_VERSIONS

SERVER, GATEWAY = "server", "gateway"  # who measured a beat's figures: a node's server or gateway


def _merge_versions(
    a: Mapping[int, ModelInterval] | None, b: Mapping[int, ModelInterval] | None
) -> dict[int, ModelInterval] | None:
    """Per-version figures of two intervals as one; unknown (None) if either is: figures per
    version that cover only part of the time would pass for all of it."""
    if a is None or b is None:
        return None
    out = dict(a)
    for version, iv in b.items():
        out[version] = iv if version not in out else merge_intervals([out[version], iv])
    return out


def _versions_json(doc: object, where: str) -> frozenset[int]:
    if not isinstance(doc, list) or not all(is_version(v) for v in doc):
        raise TelemetryError(f"{where}.versions: expected a list of versions")
    return frozenset(doc)


def _by_version_json(doc: object, where: str) -> dict[int, ModelInterval]:
    if not isinstance(doc, dict):
        raise TelemetryError(f"{where}.by_version: expected an object")
    if len(doc) > MAX_VERSIONS:
        raise TelemetryError(f"{where}.by_version: at most {MAX_VERSIONS} versions")
    out: dict[int, ModelInterval] = {}
    for key, value in doc.items():
        version = parse_version(key) if isinstance(key, str) else None
        if version is None:
            raise TelemetryError(f"{where}.by_version: bad version {str(key)[:40]!r}")
        try:
            out[version] = ModelInterval.from_json(value)
        except TelemetryError as exc:
            raise TelemetryError(f"{where}.by_version.{key}: {exc}") from None
    return out


@dataclass(frozen=True)
class BeatModel:
    """One model's figures over a beat's interval: the whole (every request the sender saw),
    the versions AVAILABLE meanwhile, and per version (None: the sender cannot tell)."""

    interval: ModelInterval
    versions: frozenset[int] = frozenset()
    by_version: Mapping[int, ModelInterval] | None = None

    def merge(self, other: BeatModel) -> BeatModel:
        return BeatModel(
            merge_intervals([self.interval, other.interval]),
            self.versions | other.versions,
            _merge_versions(self.by_version, other.by_version),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {**self.interval.to_json(), "versions": sorted(self.versions)}
        if self.by_version is not None:
            doc["by_version"] = {str(v): iv.to_json() for v, iv in sorted(self.by_version.items())}
        return doc

    @classmethod
    def from_json(cls, doc: object, where: str = "model") -> BeatModel:
        """The inverse of :meth:`to_json`, for untrusted input: TelemetryError if malformed."""
        if not isinstance(doc, dict):
            raise TelemetryError(f"{where}: expected an object")
        rest = dict(doc)
        versions = _versions_json(rest.pop("versions", []), where)
        raw = rest.pop("by_version", None)
        by_version = None if raw is None else _by_version_json(raw, where)
        return cls(ModelInterval.from_json(rest), versions, by_version)

    @property
    def empty(self) -> bool:
        return not (self.interval.requests or self.interval.latency.count)


@dataclass
class Pending:
    """Figures not yet delivered, merged per model, and the time they cover."""

    start: float
    end: float
    models: dict[str, BeatModel] = field(default_factory=dict)

    def add(self, start: float, end: float, figures: Mapping[str, BeatModel]) -> None:
        self.start, self.end = min(self.start, start), max(self.end, end)
        for model, fig in figures.items():
            old = self.models.get(model)
            self.models[model] = fig if old is None else old.merge(fig)

    def to_json(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "models": {m: f.to_json() for m, f in sorted(self.models.items())},
        }


class Outbox:
    """Figures not yet delivered: ``put()`` as they come, ``take()`` for a heartbeat,
    ``settle(ok)`` after it.

    Stop and wait: until the master acknowledges a batch, ``take()`` gives the *same* batch
    (same ``seq``) again, and what came since waits, merged, for the next one. The master counts
    each ``(boot, seq)`` once, so a beat that reached it but whose answer was lost is never
    counted twice, and nothing is lost while it is unreachable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Pending | None = None
        self._in_flight: dict[str, Any] | None = None  # sent, not acknowledged yet
        self.boot = secrets.token_hex(8)
        self._seq = 0
        self.delivered = self.undelivered = 0

    def put(self, start: float, end: float, figures: Mapping[str, BeatModel]) -> None:
        with self._lock:
            if self._pending is None:
                self._pending = Pending(start, end)
            self._pending.add(start, end, figures)

    def take(self) -> dict[str, Any] | None:
        with self._lock:
            if self._in_flight is None and self._pending is not None:
                self._seq += 1
                doc = self._pending.to_json()
                self._in_flight = {**doc, "boot": self.boot, "seq": self._seq}
                self._pending = None
            return self._in_flight

    def settle(self, ok: bool) -> None:
        """``ok``: the master has the batch last taken; if not, it goes out again unchanged."""
        with self._lock:
            if self._in_flight is None:  # the beat carried no batch
                return
            if ok:
                self._in_flight, self.delivered = None, self.delivered + 1
            else:
                self.undelivered += 1

    def state(self) -> dict[str, Any]:
        """For a daemon's /status: the batch waiting for the master's word, what waits behind
        it, and how many beats carried a batch the master took or did not answer."""
        with self._lock:
            return {
                "boot": self.boot,
                "last_seq": self._seq,
                "in_flight_seq": None if self._in_flight is None else self._in_flight["seq"],
                "pending_models": 0 if self._pending is None else len(self._pending.models),
                "delivered": self.delivered,
                "undelivered": self.undelivered,
            }


__all__ = ["GATEWAY", "SERVER", "BeatModel", "Outbox", "Pending"]
