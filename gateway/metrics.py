"""The gateway's own Prometheus metrics (``/metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from modelsync.metrics import DaemonMetrics

BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics(DaemonMetrics):
    def __init__(self) -> None:
        super().__init__("gateway")
        self.requests = self.counter(
            "requests",
            "Requests by model, convention and HTTP status (model is empty "
            "for names that never answered: the label set stays bounded).",
            "model",
            "convention",
            "status",
        )
        self.latency = self.histogram(
            "request_seconds",
            "From request read to answer ready, by model and convention.",
            BUCKETS_S,
            "model",
            "convention",
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, model: str, convention: str, status: int, seconds: float) -> None:
        """``model`` is "" for a name that never answered (the gateway keeps the set small)."""
        key = (model, convention, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(model, convention, str(status)),
                self.latency.labels(model, convention),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
