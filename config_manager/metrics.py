"""The config manager's own Prometheus metrics (``/metrics`` on its HTTP port)."""

from __future__ import annotations

from modelsync.metrics import DaemonMetrics

RELOAD_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ConfigManagerMetrics(DaemonMetrics):
    def __init__(self) -> None:
        super().__init__("config_manager")
        self.reloads = self.counter("reloads", "Reloads by outcome.", "outcome")
        self.reload_seconds = self.histogram(
            "reload_seconds", "From reload request to every version settled.", RELOAD_BUCKETS_S
        )
        self.load_failures = self.counter("load_failures", "Versions that failed to load.")
        self.pruned = self.counter("pruned_versions", "Versions removed from disk.")
        self.tfs_up = self.gauge("tfserving_up", "1 when TF Serving answered at the last pass.")
        self.tfs_restarts = self.counter(
            "tfserving_restarts", "TF Serving restarts seen (it lost the pushed config)."
        )
        self.available = self.gauge("available_versions", "Versions TF Serving reports AVAILABLE.")
