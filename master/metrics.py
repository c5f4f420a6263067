"""The master's Prometheus metrics, the client_python way.

Counters and histograms are updated where things happen; what describes the fleet (nodes by
state) is computed at scrape time by a ``Collector`` from the registry in SQLite, so it is never
stale and no handler sets gauges. Under gunicorn every worker keeps its own counts: with
``PROMETHEUS_MULTIPROC_DIR`` set (``master.server`` sets it before the workers start), values
live in that directory's files and a scrape answered by any worker merges them all
(``MultiProcessCollector``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from master.settings import MULTIPROC_ENV
from modelsync.metrics import DaemonMetrics


class FleetCollector(Collector):
    """``modelsync_master_nodes{state}``: counted from the node registry at each scrape."""

    def __init__(self, counts: Callable[[float], Mapping[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "modelsync_master_nodes", "Registered nodes by state.", labels=["state"]
        )
        for state, n in self.counts(time.time()).items():
            if state != "total":
                family.add_metric([state], n)
        yield family


class MasterMetrics(DaemonMetrics):
    def __init__(self) -> None:
        super().__init__("master")
        self.requests = self.counter("requests", "HTTP requests.", "method", "route", "status")
        self.latency = self.histogram(
            "request_seconds",
            "HTTP request latency.",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            "route",
        )
        self.heartbeats = self.counter("heartbeats", "Heartbeats received.", "role")
        self.watches = self.counter(
            "watches",
            "Watches answered: changed, nothing_new, refused (no slot), stopping.",
            "outcome",
        )
        self.catalog_refreshes = self.counter(
            "catalog_refreshes", "Catalog refreshes by outcome.", "outcome"
        )
        self.catalog_seconds = Gauge(
            self.prefix + "catalog_refresh_seconds",
            "Duration of the last catalog refresh.",
            registry=self.registry,
            multiprocess_mode="mostrecent",  # one worker refreshes; the newest value counts
        )
        self._fleet: FleetCollector | None = None

    def collect_fleet(self, counts: Callable[[float], Mapping[str, int]]) -> None:
        self._fleet = FleetCollector(counts)
        self.registry.register(self._fleet)

    def exposition(self) -> bytes:
        """The text a scrape gets: every worker's values when several share the directory."""
        if not os.environ.get(MULTIPROC_ENV):
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        if self._fleet is not None:
            merged.register(self._fleet)
        return generate_latest(merged)
