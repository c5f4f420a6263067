"""What the master's jobs routes and its background loop share, built once per process."""

from __future__ import annotations

import contextlib
import json
import threading
import time

from master.db import Database
from master.jobs.submit import BrokerDown, ChunkSender, Submitter
from master.jobs.table import JobRow, JobTable
from master.jobs.watch import JobWatcher, pending_webhook
from master.settings import MasterSettings
from modelsync.jobs.model import JobState, cancel_object
from modelsync.log import get_logger
from modelsync.store import PreconditionFailed, RemoteStore

log = get_logger("master")
WORKERS_META = "jobs_workers"
WORKERS_EVERY_S = 10.0


class Jobs:
    def __init__(self, settings: MasterSettings, db: Database, store: RemoteStore) -> None:
        self.settings = settings.jobs
        self.db = db
        self.prefix = settings.store.prefix
        self.table = JobTable(db)
        self.sender = ChunkSender(self.settings.broker) if self.settings.broker else None
        self.submitter = Submitter(store, self.prefix, self.settings, self.table)
        self.watcher = JobWatcher(self.table, store, self.prefix, self.settings)

    @property
    def enabled(self) -> bool:
        return self.sender is not None

    def cancel(self, job: JobRow, now: float) -> JobRow:
        """The cancel marker in the bucket (workers skip the job's chunks not scored yet), then
        the job ends as cancelled."""
        with contextlib.suppress(PreconditionFailed):  # cancelled already
            self.submitter.store.write(
                cancel_object(self.prefix, job.id), b"", if_generation_match=0
            )
        ended = job.with_(
            state=JobState.CANCELLED,
            finished_at=now,
            expires_at=now + self.settings.ttl_s,
            webhook=pending_webhook(job),
        )
        if self.table.end(ended, JobState.CANCELLED):
            log.info("job_cancelled", job=job.id, model=job.model)
            return ended
        return self.table.get(job.id) or ended

    def workers(self) -> dict[str, object]:
        """The workers that answered the background loop's last ping, and when."""
        raw = self.db.get_meta(WORKERS_META)
        return json.loads(raw) if raw else {"names": [], "at": None, "error": None}

    def _ping(self) -> None:
        assert self.sender is not None
        doc: dict[str, object] = {"at": time.time(), "error": None, "names": []}
        try:
            doc["names"] = self.sender.workers()
        except BrokerDown as exc:
            doc["error"] = f"the broker {self.sender.broker.safe_url} cannot be reached: {exc}"
        self.db.set_meta(WORKERS_META, json.dumps(doc))

    def start(self, stop: threading.Event) -> None:
        if self.enabled:
            threading.Thread(target=self._loop, args=(stop,), name="jobs", daemon=True).start()

    def _loop(self, stop: threading.Event) -> None:
        last_ping = 0.0
        while not stop.is_set():
            try:
                self.watcher.tick()
                if time.monotonic() - last_ping > WORKERS_EVERY_S:
                    last_ping = time.monotonic()
                    self._ping()
            except Exception:
                log.exception("jobs_watch_failed")
            stop.wait(self.settings.poll_s)
