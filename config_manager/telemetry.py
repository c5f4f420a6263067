"""Request telemetry of this node's TF Serving, for the master.

Every ``telemetry_s`` the reader fetches TF Serving's Prometheus page (the official server's
``--monitoring_config_file`` with ``prometheus_config { enable: true, path:
"/monitoring/prometheus/metrics" }``; the compatible server exports the same names, labels and
units), turns the counters and histograms into per-model interval figures
(:mod:`modelsync.telemetry`: requests and errors by status code, the latency histogram in
microseconds; counter resets after a TF Serving restart count from zero) and notes which
versions were AVAILABLE. When the page also has modelsync's per-version extension (the
compatible server's ``:modelsync:serving:request_count`` and ``request_latency``,
:mod:`modelsync.telemetry.versions`), each model's figures carry ``by_version`` too: what the
rollout judge compares when two versions serve on one node. The figures wait in the
:class:`~modelsync.telemetry.Outbox` until a heartbeat carries them to the master: merged per
model, so a beat's size is bounded by the models, not the requests, and nothing is lost while
the master is unreachable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import requests

from modelsync.log import get_logger
from modelsync.telemetry import (
    BeatModel,
    Outbox,
    Snapshot,
    VersionSnapshots,
    interval,
    parse,
    snapshot,
    version_intervals,
    version_snapshots,
)

log = get_logger("config_manager")


class TelemetryReader:
    def __init__(
        self,
        url: str,
        interval_s: float,
        outbox: Outbox,
        counted: Callable[[str], bool],
        available: Callable[[], dict[str, set[int]]],
        stop: threading.Event,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.interval_s = interval_s
        self.outbox = outbox
        self.counted = counted
        self.available = available
        self.stop = stop
        self.timeout_s = min(timeout_s, interval_s)
        self.session = requests.Session()
        self._prev: tuple[float, Snapshot, VersionSnapshots | None] | None = None
        self._failing = False
        self.reads = self.read_failures = self.batches_put = 0
        self.last_read_at: float | None = None

    def start(self) -> TelemetryReader:
        threading.Thread(target=self._run, name="telemetry", daemon=True).start()
        return self

    def _run(self) -> None:
        # the first read is the baseline (what TF Serving counted before it belongs to no known
        # interval, as with Prometheus' increase()): taken at once, so that little goes uncounted
        while True:
            try:
                self.scrape()
            except Exception:  # telemetry must never take the config manager down
                log.exception("telemetry_failed")
            if self.stop.wait(self.interval_s):
                return

    def scrape(self) -> None:
        before = {m: set(vs) for m, vs in self.available().items()}
        try:
            resp = self.session.get(self.url, timeout=self.timeout_s)
            resp.raise_for_status()
        except requests.RequestException as exc:
            self.read_failures += 1
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
        self.reads, self.last_read_at = self.reads + 1, now
        page = parse(resp.content)
        # every model on the page keeps its baseline, whether or not the config asks for it
        # now: one that left the config for a moment and came back must not count its
        # cumulative figures a second time ("a model new in cur counts from zero")
        whole = snapshot(page)
        cur = replace(whole, models={m: s for m, s in whole.models.items() if self.counted(m)})
        vcur = version_snapshots(page, set(cur.models))[0]
        prev, self._prev = self._prev, (now, cur, vcur)
        if prev is None or now <= prev[0]:
            return
        after = self.available()
        seconds = now - prev[0]
        per_version = version_intervals(prev[2], vcur, seconds)
        figures = {
            m: BeatModel(
                iv,
                frozenset(before.get(m, set()) | set(after.get(m, set()))),
                None if per_version is None else per_version.get(m, {}),
            )
            for m, iv in interval(prev[1], cur, seconds).items()
        }
        figures = {m: f for m, f in figures.items() if not f.empty}  # idle or unloaded
        if figures:
            self.outbox.put(prev[0], now, figures)
            self.batches_put += 1

    def state(self) -> dict[str, Any]:
        """For /status: how the reading goes, and the outbox."""
        return {
            "reads": self.reads,
            "read_failures": self.read_failures,
            "last_read_at": self.last_read_at,
            "figures_put": self.batches_put,
            "outbox": self.outbox.state(),
        }
