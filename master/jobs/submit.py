"""A submit: the job's row (its idempotency key held), its rows streamed into chunk objects in
the bucket as they arrive (never the whole input in memory: one chunk at a time), its spec, one
task per chunk on the broker, the job queued. Any failure on the way removes everything the
submit wrote, so a refused submit leaves nothing in the bucket and a retry can start afresh."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from master.jobs.table import JobRow, JobTable, KeyTaken
from master.settings import JobsSettings
from modelsync.jobs.model import (
    QUEUE,
    SCORE_CHUNK_TASK,
    ChunkTask,
    JobState,
    input_object,
    job_dir,
    progress,
    spec_object,
)
from modelsync.jobs.planner import ChunkPlanner
from modelsync.jobs.queue import BrokerSettings, celery_app
from modelsync.log import get_logger
from modelsync.store import RemoteStore, StoreError

log = get_logger("master")


class SubmitError(Exception):
    """The submit is refused: an HTTP status and one clear message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class BrokerDown(Exception):
    """The broker could not take the job's tasks."""


@dataclass(frozen=True)
class JobRequest:
    model: str
    version: int | None
    label: str | None
    format: str  # jsonl | csv
    source: str  # inline | upload
    webhook_url: str | None = None
    key: str | None = None

    def same_job(self, job: JobRow) -> bool:
        return (job.model, job.label, job.format, job.source) == (
            self.model,
            self.label,
            self.format,
            self.source,
        ) and (self.label is not None or job.version == self.version)


class ChunkSender:
    """The master's side of the broker: it only sends (no result backend: the bucket holds the
    results, and a backend would have the master subscribe to every task's result)."""

    def __init__(self, broker: BrokerSettings) -> None:
        self.broker = broker
        self._app: Any = None
        self._lock = threading.Lock()

    def app(self) -> Any:
        with self._lock:
            if self._app is None:
                self._app = celery_app(
                    BrokerSettings(self.broker.url, None, self.broker.visibility_s)
                )
            return self._app

    def send(self, tasks: Sequence[ChunkTask]) -> None:
        app = self.app()
        policy = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1}
        try:
            with app.producer_or_acquire() as producer:
                for task in tasks:
                    app.send_task(
                        SCORE_CHUNK_TASK,
                        kwargs={"task": task.to_message()},
                        queue=QUEUE,
                        producer=producer,
                        retry=True,
                        retry_policy=policy,
                    )
        except Exception as exc:  # kombu/redis/amqp connection errors of every kind
            raise BrokerDown(f"the broker {self.broker.safe_url} cannot be reached: {exc}") from exc

    def workers(self, timeout_s: float = 1.0) -> list[str]:
        """The workers that answer a ping now (through the broker)."""
        try:
            answers = self.app().control.ping(timeout=timeout_s) or []
        except Exception as exc:
            raise BrokerDown(str(exc)) from exc
        return sorted(name for answer in answers for name in answer)


def new_job_id() -> str:
    return secrets.token_hex(12)


class Submitter:
    def __init__(
        self, store: RemoteStore, prefix: str, settings: JobsSettings, table: JobTable
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.settings = settings
        self.table = table

    def begin(self, req: JobRequest, version: int | None, now: float) -> tuple[JobRow, bool]:
        """A new job, uploading (True), or the one ``req.key`` already names (False)."""
        job = JobRow(
            id=new_job_id(),
            state=JobState.UPLOADING,
            model=req.model,
            version=version,
            label=req.label,
            format=req.format,
            source=req.source,
            created_at=now,
            expires_at=now + self.settings.ttl_s,
            key=req.key,
            webhook_url=req.webhook_url,
        )
        for _ in range(3):  # the key's job may vanish between the insert and the read (aborted)
            try:
                self.table.insert(job)
                return job, True
            except KeyTaken:
                existing = self.table.by_key(req.key or "")
                if existing is not None:
                    return self._same(existing, req), False
        raise SubmitError(409, "this Idempotency-Key is in use by a submit that keeps failing")

    @staticmethod
    def _same(job: JobRow, req: JobRequest) -> JobRow:
        if not req.same_job(job):
            raise SubmitError(
                422,
                f"this Idempotency-Key was used for another job ({job.id}: model {job.model}, "
                f"{job.source} {job.format}); use a new key for a new job",
            )
        if job.state == JobState.UPLOADING:
            raise SubmitError(
                409,
                f"a submit with this Idempotency-Key is still uploading (job {job.id}); "
                "retry in a moment",
                {"Retry-After": "2"},
            )
        return job

    def ingest(self, job: JobRow, rows: Iterable[bytes], sender: ChunkSender) -> JobRow:
        """Write ``rows`` into chunk objects, the spec, send the tasks; the job queued. On any
        failure, everything of the job is removed and the error raised again."""
        try:
            tasks, n_bytes = self._write_chunks(job, rows)
            if not tasks:
                raise SubmitError(400, "no rows: the input holds no row to score")
            n_rows = tasks[-1].first_row + tasks[-1].rows
            job = job.with_(rows=n_rows, chunks=len(tasks), bytes=n_bytes)
            self._write_spec(job)
            sender.send(tasks)
            now = time.time()
            job = job.with_(
                state=JobState.QUEUED,
                queued_at=now,
                progress=progress(job.chunks, job.rows, now, ()).to_json(),
            )
            self.table.save(job)
            log.info(
                "job_submitted",
                job=job.id,
                model=job.model,
                rows=job.rows,
                chunks=job.chunks,
                bytes=job.bytes,
                source=job.source,
            )
            return job
        except BaseException:
            self.abort(job.id)
            raise

    def _write_chunks(self, job: JobRow, rows: Iterable[bytes]) -> tuple[list[ChunkTask], int]:
        planner = ChunkPlanner(self.settings.chunk)
        tasks: list[ChunkTask] = []
        buf: list[bytes] = []
        total = 0

        def flush() -> None:
            first = tasks[-1].first_row + tasks[-1].rows if tasks else 0
            chunk = ChunkTask(
                job.id, len(tasks), job.model, job.version, job.format, first, len(buf)
            )
            self.store.write(
                input_object(self.prefix, job.id, chunk.chunk),
                b"\n".join(buf) + b"\n",
                if_generation_match=0,
                content_type="application/x-ndjson",
            )
            tasks.append(chunk)
            buf.clear()

        for row in rows:
            if planner.add(len(row) + 1) and buf:
                flush()
            buf.append(row)
            total += len(row) + 1
        if buf:
            flush()
        return tasks, total

    def _write_spec(self, job: JobRow) -> None:
        spec = {
            "schema": 1,
            "id": job.id,
            "model": job.model,
            "version": job.version,
            "label": job.label,
            "format": job.format,
            "source": job.source,
            "rows": job.rows,
            "chunks": job.chunks,
            "created_at": job.created_at,
        }
        self.store.write(
            spec_object(self.prefix, job.id),
            json.dumps(spec, indent=1).encode(),
            if_generation_match=0,
            content_type="application/json",
        )

    def abort(self, job_id: str) -> None:
        """Remove what a failed submit wrote (its objects, then its row and key)."""
        try:
            delete_objects(self.store, job_dir(self.prefix, job_id))
        except StoreError as exc:  # retention deletes the rest: the job expires now
            log.warning("job_abort_incomplete", job=job_id, error=str(exc))
            job = self.table.get(job_id)
            if job is not None:
                self.table.save(job.with_(key=None, expires_at=time.time()))
            return
        self.table.delete(job_id)


def delete_objects(store: RemoteStore, prefix: str) -> int:
    """Delete every object under ``prefix``; how many."""
    names = [o.name for o in store.list_objects(prefix)]
    for name in names:
        try:
            store.delete(name)
        except StoreError as exc:
            if "not found" not in str(exc):
                raise
    return len(names)
