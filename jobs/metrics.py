"""The worker's own Prometheus metrics (``/metrics``)."""

from __future__ import annotations

from modelsync.metrics import DaemonMetrics

BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class WorkerMetrics(DaemonMetrics):
    def __init__(self) -> None:
        super().__init__("worker")
        self.chunks = self.counter(
            "chunks",
            "Chunks by outcome: scored, duplicate (its result existed), cancelled, given_up "
            "(TF Serving did not answer within MODELSYNC_JOB_RETRY_S: every row an error).",
            "outcome",
        )
        self.rows = self.counter(
            "rows", "Rows written to results, by outcome (ok, error).", "outcome"
        )
        self.retries = self.counter(
            "retries", "Chunk retries (TF Serving or the bucket unavailable)."
        )
        self.chunk_seconds = self.histogram(
            "chunk_seconds", "From reading a chunk's rows to its result written.", BUCKETS_S
        )
