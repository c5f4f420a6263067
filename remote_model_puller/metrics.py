"""The puller's own Prometheus metrics (``/metrics`` on its HTTP port)."""

from __future__ import annotations

from modelsync.metrics import DaemonMetrics

INSTALL_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class PullerMetrics(DaemonMetrics):
    def __init__(self) -> None:
        super().__init__("puller")
        self.polls = self.counter("polls", "Polls by outcome.", "outcome")
        self.poll_calls = self.gauge("poll_storage_calls", "Storage calls made by the last poll.")
        self.storage_calls = self.counter("storage_calls", "Storage calls by kind.", "kind")
        self.installs = self.counter("installs", "Installs by outcome.", "outcome")
        self.install_bytes = self.counter("install_bytes", "Bytes installed.")
        self.install_seconds = self.histogram(
            "install_seconds", "Seconds per install.", INSTALL_BUCKETS_S
        )
        self.versions = self.gauge("versions_installed", "Versions on local disk.")
        self.last_poll = self.gauge(
            "last_poll_timestamp_seconds", "Time of the last successful poll."
        )
        self.catalog_source = self.gauge(
            "catalog_in_use", "1 while the catalog is used, 0 while listing the bucket."
        )
