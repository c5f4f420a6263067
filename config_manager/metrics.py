"""The config manager's own Prometheus metrics (``/metrics`` on its HTTP port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConfigManagerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.reloads = Counter(
            "modelsync_config_manager_reloads", "Reloads by outcome.", ["outcome"], registry=r
        )
        self.reload_seconds = Histogram(
            "modelsync_config_manager_reload_seconds",
            "From reload request to every version settled.",
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.load_failures = Counter(
            "modelsync_config_manager_load_failures", "Versions that failed to load.", registry=r
        )
        self.pruned = Counter(
            "modelsync_config_manager_pruned_versions", "Versions removed from disk.", registry=r
        )
        self.tfs_up = Gauge(
            "modelsync_config_manager_tfserving_up",
            "1 when TF Serving answered at the last pass.",
            registry=r,
        )
        self.tfs_restarts = Counter(
            "modelsync_config_manager_tfserving_restarts",
            "TF Serving restarts seen (it lost the pushed config).",
            registry=r,
        )
        self.available = Gauge(
            "modelsync_config_manager_available_versions",
            "Versions TF Serving reports AVAILABLE.",
            registry=r,
        )
