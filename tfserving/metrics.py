"""Prometheus metrics of the model server, named as TF Serving names its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tfserving.manager import ModelManager
from tfserving.policy import State


class ServerMetrics:
    def __init__(self, manager_ref: list[ModelManager] | None = None) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(":tensorflow:serving:request_count",
                                 "Number of requests by API, model and status.",
                                 ["api", "model_name", "status"], registry=self.registry)
        self._latency = Histogram(":tensorflow:serving:request_latency",
                                  "Request latency in seconds by API and model.",
                                  ["api", "model_name"], registry=self.registry,
                                  buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5,
                                           1, 2.5, 5, 10))
        self._versions = Gauge("modelsync_model_server_versions",
                               "Model versions by state.", ["model_name", "state"],
                               registry=self.registry)
        self._batches = Gauge("modelsync_model_server_batches",
                              "Batches run (with --enable_batching), by model.", ["model_name"],
                              registry=self.registry)
        self._batch_rows = Gauge("modelsync_model_server_batched_rows",
                                 "Rows run in batches, by model.", ["model_name"],
                                 registry=self.registry)
        self._manager_ref = manager_ref or []

    def request(self, api: str, model: str, status: str, seconds: float) -> None:
        self._requests.labels(api, model or "-", status).inc()
        if status == "OK":
            self._latency.labels(api, model).observe(seconds)

    def render(self) -> bytes:
        self._versions.clear()
        for manager in self._manager_ref:
            for name, entry in manager.models().items():
                counts: dict[str, int] = {}
                for v in entry.versions.values():
                    state = (State.START if v.state == State.UNKNOWN else v.state).name
                    counts[state] = counts.get(state, 0) + 1
                for state, n in counts.items():
                    self._versions.labels(name, state).set(n)
                batches = rows = 0
                for v in entry.versions.values():
                    stats = getattr(v.servable, "batch_stats", None)
                    if stats is not None:
                        b, r = stats()
                        batches, rows = batches + b, rows + r
                if batches:
                    self._batches.labels(name).set(batches)
                    self._batch_rows.labels(name).set(rows)
        return generate_latest(self.registry)
