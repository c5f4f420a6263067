"""What the gateway answered, per model and per answering version, for the master (its rollout
judge): the gateway sees the version of every answer it got over gRPC, where TF Serving's own
metrics carry none.

Each answer is counted by its gRPC status code name, as TF Serving's ``request_count`` counts:
the code TF Serving answered when it answered one (a Predict over gRPC), ``INVALID_ARGUMENT``
when the request could not become the signature's tensors, else the code of the HTTP status
(``gateway.errors.HTTP_TO_GRPC``: a REST pass-through answer, the gateway's own refusals). The
latency of OK answers goes into a histogram in microseconds on TF Serving's buckets
(``Exponential(10, 1.8, 33)``), so the master merges it with anything on that grid. A version is
known for an answer from the gRPC response, for a failure from the version the request was built
for (``modelsync.tfs.Attempt``), for a REST pass-through only when its URL names one.

The figures ride on the gateway's heartbeats in the config manager's format
(``modelsync.telemetry.BeatModel``: the model's whole, and ``by_version``), kept in the
heartbeat's :class:`~modelsync.telemetry.Outbox` until the master has them.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from modelsync.telemetry import (
    INF,
    LATENCY_BOUNDS_US,
    OK,
    BeatModel,
    Histogram,
    ModelInterval,
    Outbox,
)

MAX_MODELS = 1000  # as the gateway's label set (gateway.app.MAX_MODELS)
MAX_VERSIONS = 16  # per model: answers of more versions count for the model only
MAX_CODES = 32  # per version


@dataclass
class _Counts:
    statuses: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_US) + 1))
    total_us: float = 0.0

    def add(self, code: str, latency_us: float) -> None:
        if code in self.statuses or len(self.statuses) < MAX_CODES:
            self.statuses[code] = self.statuses.get(code, 0) + 1
        if code == OK:
            self.buckets[bisect.bisect_right(LATENCY_BOUNDS_US, latency_us)] += 1
            self.total_us += latency_us

    def interval(self, seconds: float) -> ModelInterval:
        bounds = (*LATENCY_BOUNDS_US, INF)
        histogram = Histogram(bounds, tuple(accumulate(self.buckets)), self.total_us)
        return ModelInterval(seconds, dict(self.statuses), histogram.compact())


@dataclass
class _Model:
    whole: _Counts = field(default_factory=_Counts)
    by_version: dict[int, _Counts] = field(default_factory=dict)


class GatewayTelemetry:
    """Counts the gateway's answers and is its heartbeats' outbox (``take`` / ``settle``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._since = clock()
        self.outbox = Outbox()

    def record(self, model: str, version: int | None, code: str, seconds: float) -> None:
        """One answer for ``model`` ("" and names beyond MAX_MODELS are not counted)."""
        if not model:
            return
        latency_us = max(0.0, seconds * 1_000_000) if math.isfinite(seconds) else 0.0
        with self._lock:
            entry = self._models.get(model)
            if entry is None:
                if len(self._models) >= MAX_MODELS:
                    return
                entry = self._models[model] = _Model()
            entry.whole.add(code, latency_us)
            if version is not None and (
                version in entry.by_version or len(entry.by_version) < MAX_VERSIONS
            ):
                entry.by_version.setdefault(version, _Counts()).add(code, latency_us)

    def drain(self) -> None:
        """Move what was counted since the last drain into the outbox."""
        now = self._clock()
        with self._lock:
            models, self._models = self._models, {}
            since, self._since = self._since, now
        seconds = max(now - since, 1e-3)
        figures = {
            model: BeatModel(
                m.whole.interval(seconds),
                frozenset(),
                {v: c.interval(seconds) for v, c in m.by_version.items()},
            )
            for model, m in models.items()
        }
        if figures:
            self.outbox.put(since, now, figures)

    def take(self) -> dict[str, Any] | None:
        self.drain()
        return self.outbox.take()

    def settle(self, ok: bool) -> None:
        self.outbox.settle(ok)
