"""Recent requests per model: a bounded, sampled ring, and a small summary for heartbeats.

    h = History(per_model=200, sample=1.0, capture=False)
    h.record(Exchange(model="ranker", version=3, convention="mlflow", latency_ms=1.2, status=200))
    h.entries("ranker", limit=50)   # newest first
    h.summary()                     # {"models": {"ranker": {"count", "errors", "p50_ms", ...}}}

Thread-safe; no I/O. Successful requests are sampled with probability ``sample``; errors are
always kept. ``count`` and ``errors`` count every request since start, sampled or not; the
percentiles are over the ring.
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelsync.reports import HistorySummary, ModelHistory

CONVENTIONS = ("mlflow", "kraken", "tfserving-rest")
MAX_ERROR_CHARS = 500
SUMMARY_ERROR_CHARS = 200


def truncate(data: bytes | None, limit: int) -> str | None:
    """A captured body as text, at most ``limit`` bytes of it, with a marker when cut."""
    if data is None:
        return None
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace")
    return (
        data[:limit].decode("utf-8", errors="ignore")
        + f"...[truncated {len(data) - limit} of {len(data)} bytes]"
    )


@dataclass(frozen=True)
class Exchange:
    """One request the gateway answered, as it hands it to the history."""

    model: str
    version: int | None
    convention: str  # one of CONVENTIONS
    latency_ms: float
    status: int  # HTTP
    error: str | None = None
    request: bytes | None = None  # the bodies: kept only when capture is on
    response: bytes | None = None


@dataclass(frozen=True)
class Entry:
    ts: float
    model: str
    version: int | None
    convention: str
    latency_ms: float
    status: int
    error: str | None = None
    request: str | None = None
    response: str | None = None

    def to_json(self, bodies: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "ts": round(self.ts, 3),
            "model": self.model,
            "version": self.version,
            "convention": self.convention,
            "latency_ms": round(self.latency_ms, 3),
            "status": self.status,
            "error": self.error,
        }
        if bodies and (self.request is not None or self.response is not None):
            doc["request"] = self.request
            doc["response"] = self.response
        return doc


@dataclass
class _Ring:
    entries: deque[Entry]
    count: int = 0
    errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 3)


class History:
    def __init__(
        self,
        per_model: int = 200,
        sample: float = 1.0,
        capture: bool = False,
        capture_bytes: int = 4096,
        max_models: int = 256,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_model = per_model
        self.sample = sample
        self.capture = capture
        self.capture_bytes = capture_bytes
        self.max_models = max_models
        self._rng = rng
        self._clock = clock
        self._lock = threading.Lock()
        self._rings: OrderedDict[str, _Ring] = OrderedDict()

    def record(self, x: Exchange, ring: str | None = None) -> bool:
        """Count the request; keep it in the ring of ``ring`` (default: the model) if sampled
        (always, if an error). Returns whether it was kept. The gateway files requests for
        names that never answered in the ring ``""``, so that they cannot push real models
        out."""
        failed = x.status >= 400
        keep = self.per_model > 0 and (failed or self.sample >= 1.0 or self._rng() < self.sample)
        entry = None
        if keep:
            entry = Entry(
                self._clock(),
                x.model,
                x.version,
                x.convention,
                x.latency_ms,
                x.status,
                x.error[:MAX_ERROR_CHARS] if x.error else None,
                truncate(x.request, self.capture_bytes) if self.capture else None,
                truncate(x.response, self.capture_bytes) if self.capture else None,
            )
        key = x.model if ring is None else ring
        with self._lock:
            target = self._rings.get(key)
            if target is None:
                target = self._rings[key] = _Ring(deque(maxlen=max(self.per_model, 1)))
                while len(self._rings) > self.max_models:
                    self._rings.popitem(last=False)
            else:
                self._rings.move_to_end(key)
            target.count += 1
            target.errors += failed
            target.by_status[x.status] = target.by_status.get(x.status, 0) + 1
            if entry is not None:
                target.entries.append(entry)
        return entry is not None

    def entries(self, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first; of one model, or of all models merged."""
        with self._lock:
            if model is not None:
                ring = self._rings.get(model)
                picked = (
                    list(ring.entries)
                    if ring
                    else [e for e in self._rings[""].entries if e.model == model]
                    if "" in self._rings
                    else []
                )
            else:
                picked = [e for r in self._rings.values() for e in r.entries]
        picked.sort(key=lambda e: e.ts, reverse=True)
        return [e.to_json() for e in picked[:limit]]

    def models(self) -> list[str]:
        with self._lock:
            return list(self._rings)

    def summary(self, max_models: int = 50, last: int = 10) -> HistorySummary:
        """Per model (the ``max_models`` most recently used): count and errors since start,
        requests by status, p50/p99 latency of the ring, the last ``last`` entries without
        captured bodies. Small and JSON-able, for a heartbeat."""
        with self._lock:
            rings = list(self._rings.items())[-max_models:]
            snap = [(m, r.count, r.errors, dict(r.by_status), list(r.entries)) for m, r in rings]
        models: dict[str, ModelHistory] = {}
        for model, count, errors, by_status, entries in reversed(snap):
            lat = [e.latency_ms for e in entries]
            tail = []
            for e in entries[-last:][::-1]:
                doc = e.to_json(bodies=False)
                if doc["error"]:
                    doc["error"] = doc["error"][:SUMMARY_ERROR_CHARS]
                tail.append(doc)
            models[model] = {
                "count": count,
                "errors": errors,
                "by_status": {str(k): v for k, v in sorted(by_status.items())},
                "ring": len(entries),
                "p50_ms": _percentile(lat, 50),
                "p99_ms": _percentile(lat, 99),
                "last": tail,
            }
        return {"models": models, "sample": self.sample, "per_model": self.per_model}
