"""Request telemetry of this node's TF Serving, for the master.

Every ``telemetry_s`` the reader fetches TF Serving's Prometheus page (the official server's
``--monitoring_config_file`` with ``prometheus_config { enable: true, path:
"/monitoring/prometheus/metrics" }``; the compatible server exports the same names, labels and
units), turns the counters and histograms into per-model interval figures
(:mod:`modelsync.telemetry`: requests and errors by status code, the latency histogram in
microseconds; counter resets after a TF Serving restart count from zero) and notes which
versions were AVAILABLE. The figures wait in the :class:`Outbox` until a heartbeat carries them
to the master: merged per model, so a beat's size is bounded by the models, not the requests,
and nothing is lost while the master is unreachable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from modelsync.log import get_logger
from modelsync.telemetry import ModelInterval, Snapshot, interval, merge_intervals, snapshot

log = get_logger("config_manager")


@dataclass
class Pending:
    start: float
    end: float
    models: dict[str, tuple[ModelInterval, set[int]]] = field(default_factory=dict)

    def add(
        self, start: float, end: float, figures: dict[str, tuple[ModelInterval, set[int]]]
    ) -> None:
        self.start, self.end = min(self.start, start), max(self.end, end)
        for model, (iv, versions) in figures.items():
            if model in self.models:
                old, seen = self.models[model]
                iv, versions = merge_intervals([old, iv]), seen | versions
            self.models[model] = (iv, set(versions))

    def to_json(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "models": {
                m: {**iv.to_json(), "versions": sorted(vs)}
                for m, (iv, vs) in sorted(self.models.items())
            },
        }


class Outbox:
    """Figures not yet delivered: ``take()`` for a heartbeat, ``settle(ok)`` after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Pending | None = None
        self._in_flight: Pending | None = None

    def put(
        self, start: float, end: float, figures: dict[str, tuple[ModelInterval, set[int]]]
    ) -> None:
        with self._lock:
            if self._pending is None:
                self._pending = Pending(start, end)
            self._pending.add(start, end, figures)

    def take(self) -> dict[str, Any] | None:
        with self._lock:
            if self._in_flight is not None:  # the last beat's fate is unknown: send both
                self.settle_locked(False)
            self._in_flight, self._pending = self._pending, None
            return None if self._in_flight is None else self._in_flight.to_json()

    def settle(self, ok: bool) -> None:
        with self._lock:
            self.settle_locked(ok)

    def settle_locked(self, ok: bool) -> None:
        sent, self._in_flight = self._in_flight, None
        if ok or sent is None:
            return
        if self._pending is not None:  # not delivered: back in front of what came since
            sent.add(self._pending.start, self._pending.end, self._pending.models)
        self._pending = sent


class TelemetryReader:
    def __init__(
        self,
        url: str,
        interval_s: float,
        outbox: Outbox,
        models: Callable[[], set[str]],
        available: Callable[[], dict[str, set[int]]],
        stop: threading.Event,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.interval_s = interval_s
        self.outbox = outbox
        self.models = models
        self.available = available
        self.stop = stop
        self.timeout_s = min(timeout_s, interval_s)
        self.session = requests.Session()
        self._prev: tuple[float, Snapshot] | None = None
        self._failing = False

    def start(self) -> TelemetryReader:
        threading.Thread(target=self._run, name="telemetry", daemon=True).start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                self.scrape()
            except Exception:  # telemetry must never take the config manager down
                log.exception("telemetry_failed")

    def scrape(self) -> None:
        before = {m: set(vs) for m, vs in self.available().items()}
        try:
            resp = self.session.get(self.url, timeout=self.timeout_s)
            resp.raise_for_status()
        except requests.RequestException as exc:
            if not self._failing:
                log.warning("telemetry_unreachable", url=self.url, error=str(exc)[:200])
            self._failing = True
            # keep the last snapshot: if TF Serving restarted meanwhile its counters went down
            # (a reset: the new values count from zero); if not, the deltas are exact
            return
        if self._failing:
            log.info("telemetry_reachable_again", url=self.url)
        self._failing = False
        now = time.time()
        cur = snapshot(resp.content, models=self.models())
        prev, self._prev = self._prev, (now, cur)
        if prev is None or now <= prev[0]:
            return
        after = self.available()
        figures = {
            m: (iv, before.get(m, set()) | set(after.get(m, set())))
            for m, iv in interval(prev[1], cur, now - prev[0]).items()
        }
        if figures:
            self.outbox.put(prev[0], now, figures)
