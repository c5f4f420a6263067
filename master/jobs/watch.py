"""Following the jobs (in the one master process that runs the background work, every
``MODELSYNC_JOB_POLL_S``): a running job's progress from the summaries of its scored chunks
(one listing of its results), its end when every chunk is scored, the webhook then (signed,
retried with backoff), and retention: a job's objects and row deleted ``MODELSYNC_JOB_TTL_S``
after it ended (an abandoned upload's after it started)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests

from master.jobs.submit import delete_objects
from master.jobs.table import JobRow, JobTable
from master.settings import JobsSettings
from modelsync.jobs import webhook
from modelsync.jobs.model import (
    BadMessage,
    ChunkSummary,
    JobState,
    chunk_of,
    job_dir,
    outputs_dir,
    progress,
)
from modelsync.log import get_logger
from modelsync.store import RemoteStore, StoreError

log = get_logger("master")
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_ATTEMPTS = 8

Post = Callable[..., Any]


def pending_webhook(job: JobRow) -> dict[str, Any]:
    return {"state": "pending", "attempts": 0, "next_at": 0} if job.webhook_url else {}


def summaries(store: RemoteStore, prefix: str, job: JobRow) -> list[ChunkSummary]:
    out = []
    for obj in store.list_objects(outputs_dir(prefix, job.id)):
        chunk = chunk_of(obj.name)
        if chunk is None:
            continue
        try:
            out.append(ChunkSummary.from_metadata(chunk, obj.metadata, obj.updated))
        except BadMessage as exc:
            log.warning("job_chunk_summary_malformed", job=job.id, error=str(exc))
    return out


def refreshed(store: RemoteStore, prefix: str, ttl_s: float, job: JobRow, now: float) -> JobRow:
    """``job`` with its progress as the bucket has it (done when every chunk is scored)."""
    if job.state not in (JobState.QUEUED, JobState.RUNNING):
        return job
    p = progress(
        job.chunks, job.rows, job.queued_at or job.created_at, summaries(store, prefix, job)
    )
    if p.complete:
        ended = p.last_result_at or now
        return job.with_(
            state=JobState.DONE,
            progress=p.to_json(),
            finished_at=ended,
            expires_at=ended + ttl_s,
            webhook=pending_webhook(job),
        )
    state = JobState.RUNNING if p.chunks_done else JobState.QUEUED
    return job.with_(state=state, progress=p.to_json())


class JobWatcher:
    def __init__(
        self,
        table: JobTable,
        store: RemoteStore,
        prefix: str,
        settings: JobsSettings,
        post: Post = requests.post,
    ) -> None:
        self.table = table
        self.store = store
        self.prefix = prefix
        self.settings = settings
        self.post = post

    def refresh(self, job: JobRow, now: float) -> JobRow:
        fresh = refreshed(self.store, self.prefix, self.settings.ttl_s, job, now)
        if fresh != job and self.table.update_progress(fresh):
            if fresh.state == JobState.DONE:
                log.info(
                    "job_done",
                    job=job.id,
                    model=job.model,
                    rows=fresh.rows,
                    errors=fresh.progress.get("errors"),
                    seconds=round((fresh.finished_at or now) - (job.queued_at or now), 3),
                )
            return fresh
        return self.table.get(job.id) or fresh

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for job in self.table.recent((JobState.QUEUED, JobState.RUNNING), limit=1000):
            try:
                self.refresh(job, now)
            except StoreError as exc:
                log.warning("job_refresh_failed", job=job.id, error=str(exc))
        for job in self.table.webhooks_due(now):
            self.deliver(job, now)
        for job in self.table.expired(now):
            self.expire(job)

    def expire(self, job: JobRow) -> None:
        try:
            deleted = delete_objects(self.store, job_dir(self.prefix, job.id))
        except StoreError as exc:
            log.warning("job_expiry_failed", job=job.id, error=str(exc))
            return
        self.table.delete(job.id)
        log.info("job_expired", job=job.id, state=str(job.state), objects=deleted)

    def deliver(self, job: JobRow, now: float) -> None:
        """One attempt at the job's webhook; the next is due after a doubling backoff."""
        assert job.webhook_url is not None
        hook = dict(job.webhook)
        event = "job.done" if job.state == JobState.DONE else "job.cancelled"
        body = json.dumps({"event": event, "job": job.to_json()}, separators=(",", ":")).encode()
        secret = (self.settings.webhook_secret or "").encode()
        headers = {
            "Content-Type": "application/json",
            webhook.SIGNATURE_HEADER: webhook.signature(secret, body, int(now)),
            webhook.JOB_HEADER: job.id,
        }
        hook["attempts"] = int(hook.get("attempts", 0)) + 1
        try:
            resp = self.post(
                job.webhook_url,
                data=body,
                headers=headers,
                timeout=WEBHOOK_TIMEOUT_S,
                allow_redirects=False,
            )
            hook["last_status"], hook["last_error"] = resp.status_code, None
            ok = 200 <= resp.status_code < 300
        except requests.RequestException as exc:
            hook["last_status"], hook["last_error"], ok = None, str(exc)[:300], False
        if ok:
            hook.update(state="delivered", delivered_at=now)
        elif hook["attempts"] >= WEBHOOK_ATTEMPTS:
            hook["state"] = "failed"
        else:
            hook["next_at"] = now + min(300.0, 2.0 ** hook["attempts"])
        self.table.update_webhook(job.id, hook)
        log.info(
            "job_webhook",
            job=job.id,
            state=hook["state"],
            attempts=hook["attempts"],
            status=hook.get("last_status"),
            error=hook.get("last_error"),
        )
