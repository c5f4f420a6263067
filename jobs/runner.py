"""One chunk, exactly once in the result: skip it if the job is cancelled or its result exists,
read its rows, score them through the node's TF Serving, write its result object once (by chunk
id, ``if_generation_match=0``: a second delivery that scored it again loses the race and its
lines are dropped), with its summary as the object's metadata."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from jobs.metrics import WorkerMetrics
from jobs.scoring import Build, Rejected, parse_rows, score_rows
from jobs.settings import WorkerSettings
from modelsync.jobs.model import (
    ChunkSummary,
    ChunkTask,
    cancel_object,
    error_line,
    input_object,
    output_object,
)
from modelsync.log import get_logger
from modelsync.store import NotFound, PreconditionFailed, RemoteStore
from modelsync.tensors import Array
from modelsync.tfs import ServingError, TFServingClient

log = get_logger("worker")
# TF Serving's answers that blame the rows (the rest are TF Serving's trouble: retried)
ROW_CODES = ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE")


class Unavailable(Exception):
    """TF Serving could not score now (down, restarting, the model not loaded): retry later."""


@dataclass(frozen=True)
class Outcome:
    outcome: str  # scored | duplicate | cancelled | given_up
    summary: ChunkSummary | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"outcome": self.outcome}
        if self.summary is not None:
            doc.update(rows=self.summary.rows, errors=self.summary.errors)
        return doc


class ChunkRunner:
    def __init__(
        self,
        settings: WorkerSettings,
        store: RemoteStore,
        client: TFServingClient,
        metrics: WorkerMetrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.metrics = metrics
        self.prefix = settings.store.prefix

    def _predict(self, task: ChunkTask) -> Any:
        def predict(build: Build) -> tuple[int, dict[str, Array]]:
            try:
                answer = self.client.predict(task.model, task.version, build)
            except ServingError as exc:
                if exc.code in ROW_CODES:
                    raise Rejected(exc.message) from None
                raise Unavailable(exc.message) from exc
            return answer.version, answer.outputs

        return predict

    def skip(self, task: ChunkTask) -> Outcome | None:
        """cancelled or duplicate (its result exists), else None."""
        if self.store.stat(cancel_object(self.prefix, task.job)) is not None:
            return Outcome("cancelled")
        if self.store.stat(output_object(self.prefix, task.job, task.chunk)) is not None:
            return Outcome("duplicate")
        return None

    def run(self, task: ChunkTask) -> Outcome:
        skipped = self.skip(task)
        if skipped is not None:
            self._count(task, skipped)
            return skipped
        log.info("chunk_started", job=task.job, chunk=task.chunk, rows=task.rows)
        started = time.monotonic()
        try:
            data = self.store.read(input_object(self.prefix, task.job, task.chunk))
        except NotFound:  # the job expired or was deleted meanwhile: nothing to do
            return self._count(task, Outcome("cancelled"))
        rows = parse_rows(data.splitlines())
        result = score_rows(
            rows,
            task.first_row,
            self._predict(task),
            self.settings.batch_rows,
            csv=task.format == "csv",
        )
        summary = ChunkSummary(
            chunk=task.chunk,
            rows=result.rows,
            errors=result.errors,
            versions=result.versions,
            first_error=result.first_error,
            seconds=time.monotonic() - started,
            worker=self.settings.node.node_id,
        )
        return self._write(task, b"".join(result.lines), summary)

    def give_up(self, task: ChunkTask, reason: str) -> Outcome:
        """Every row of the chunk an error line: TF Serving could not score it in time."""
        message = (
            f"not scored: TF Serving did not answer for {self.settings.retry_s:g} s ({reason})"
        )
        lines = [error_line(task.first_row + i, message) for i in range(task.rows)]
        summary = ChunkSummary(
            chunk=task.chunk,
            rows=task.rows,
            errors=task.rows,
            first_error=f"row {task.first_row}: {message}",
            worker=self.settings.node.node_id,
        )
        outcome = self._write(task, b"".join(lines), summary)
        return Outcome("given_up", outcome.summary) if outcome.outcome == "scored" else outcome

    def _write(self, task: ChunkTask, data: bytes, summary: ChunkSummary) -> Outcome:
        try:
            self.store.write(
                output_object(self.prefix, task.job, task.chunk),
                data,
                if_generation_match=0,
                content_type="application/x-ndjson",
                metadata=summary.to_metadata(),
            )
        except PreconditionFailed:  # another delivery of this chunk wrote it first
            return self._count(task, Outcome("duplicate"))
        log.info(
            "chunk_scored",
            job=task.job,
            chunk=task.chunk,
            rows=summary.rows,
            errors=summary.errors,
            seconds=round(summary.seconds, 4),
        )
        return self._count(task, Outcome("scored", summary))

    def _count(self, task: ChunkTask, outcome: Outcome) -> Outcome:
        self.metrics.chunks.labels(outcome.outcome).inc()
        if outcome.summary is not None:
            self.metrics.rows.labels("ok").inc(outcome.summary.rows - outcome.summary.errors)
            self.metrics.rows.labels("error").inc(outcome.summary.errors)
            self.metrics.chunk_seconds.observe(outcome.summary.seconds)
        if outcome.outcome in ("duplicate", "cancelled"):
            log.info(f"chunk_{outcome.outcome}", job=task.job, chunk=task.chunk)
        return outcome
