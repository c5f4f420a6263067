"""A daemon's own Prometheus metrics: one registry per daemon, every name under
``modelsync_<daemon>_`` (what ``/metrics`` serves). The naming rule lives here, once::

    class PullerMetrics(DaemonMetrics):
        def __init__(self) -> None:
            super().__init__("puller")
            self.polls = self.counter("polls", "Polls by outcome.", "outcome")
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DaemonMetrics:
    def __init__(self, daemon: str) -> None:
        self.registry = CollectorRegistry()
        self.prefix = f"modelsync_{daemon}_"

    def counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(self.prefix + name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        return Gauge(self.prefix + name, documentation, labels, registry=self.registry)

    def histogram(
        self, name: str, documentation: str, buckets: Sequence[float], *labels: str
    ) -> Histogram:
        return Histogram(
            self.prefix + name, documentation, labels, registry=self.registry, buckets=buckets
        )
