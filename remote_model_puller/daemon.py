"""``modelsync puller``: mirror the versions this node should serve to local disk.

A loop of ``tick()`` calls, one reconcile pass each, every ``poll_s`` seconds or at once on
``POST /sync`` or a word from the master's watch: poll the bucket view (catalog + policy: two
metadata reads when idle), plan, and hand each model what to install — a queue and a worker per
model (``workers``), several models at once within ``max_concurrent_installs``, each version's
files in parallel within ``download_workers``. The loop never waits for an install, so a policy
change is read (and written for the config manager) whatever is downloading, and an install
the new policy no longer wants is cancelled. Failures are events and back off with jitter; the loop
never dies of the project's own errors. SIGTERM abandons a download cleanly and exits 0.
"""

from __future__ import annotations

import collections
import math
import os
import random
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from modelsync.events import EventLog
from modelsync.local import InstallRecord, LocalLayout
from modelsync.log import get_logger
from modelsync.nodedaemon import serve
from modelsync.reports import PullerStatus
from modelsync.store import GCSStore, RemoteStore, StoreError, require_bucket
from modelsync.watch import WatchClient, start_watch
from remote_model_puller.bucket_view import BucketView, RemoteState
from remote_model_puller.installer import Installer
from remote_model_puller.metrics import PullerMetrics
from remote_model_puller.planner import plan_sync
from remote_model_puller.pollwatch import PollWatch
from remote_model_puller.settings import PullerSettings
from remote_model_puller.workers import InstallTask, ModelOp, ModelWorkers, Outcome

log = get_logger("puller")
# failures that no retry can mend: the event each is, retried only on a content change
PERMANENT = {"manifest_mismatch": "manifest_mismatch"}


@dataclass
class _Failure:
    count: int
    next_at: float
    kind: str
    message: str


@dataclass
class PollResult:
    ok: bool
    source: str = ""
    calls: int = 0
    seconds: float = 0.0
    installed: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int, str]] = field(default_factory=list)
    error: str = ""


class Puller:
    role = "puller"
    outbox = None  # nothing to carry on a beat but the status and the events

    def __init__(self, settings: PullerSettings, store: RemoteStore | None = None) -> None:
        self.settings = settings
        self.store: RemoteStore = store or GCSStore(
            settings.store, pool_size=max(10, settings.download_workers + 4)
        )
        self.layout = LocalLayout(settings.model_root)
        self.layout.ensure()
        swept = self.layout.sweep_incoming()
        if swept:
            log.warning("incoming_swept", leftovers=swept)
        self.view = BucketView(
            self.store,
            settings.store,
            self.layout,
            catalog_max_age_s=settings.catalog_max_age_s,
            settle_s=settings.settle_s,
        )
        self.events = EventLog(log)
        for event in self.view.take_events():
            self.events.add(event)
        self.stop_event = threading.Event()
        self.sync_event = threading.Event()
        self.installer = Installer(
            self.store,
            settings.store,
            self.layout,
            None,  # each install brings its own file pool (ModelWorkers)
            max_tar_bytes=settings.max_tar_bytes,
            max_tar_members=settings.max_tar_members,
            stop=self.stop_event,
        )
        self.workers = ModelWorkers(
            self._install, self._done, self._installed, settings.max_concurrent_installs
        )
        self.metrics = PullerMetrics()
        self.poll_watch = PollWatch(
            settings.poll_s, settings.poll_deadline_s, self.events, self.metrics
        )
        self._failures: dict[tuple[str, int, str, int | None], _Failure] = {}
        self._seen_problems: set[str] = set()
        self._lock = threading.Lock()
        self._last: PollResult | None = None
        self._last_ok_at: float | None = None
        self._wanted: dict[str, list[int]] = {}
        self._calls_seen: collections.Counter[str] = collections.Counter()
        self.watch: WatchClient | None = None  # started by run()

    # --- one pass ------------------------------------------------------------------------------
    def tick(self, wait: bool = True) -> PollResult:
        """One pass: poll, plan, hand out the installs. The daemon's loop does not wait for
        them (``wait=False``: a policy change is read and acted on whatever is downloading);
        a test or a one-shot caller waits, and gets their outcomes in the result."""
        started = time.monotonic()
        self.poll_watch.begin()
        try:
            with self.store.deadline(self.settings.poll_deadline_s):
                state = self.view.poll()
        except StoreError as exc:
            seconds = round(time.monotonic() - started, 3)
            result = PollResult(ok=False, error=str(exc), seconds=seconds)
            self.metrics.polls.labels("error").inc()
            self.events.emit(
                "poll_failed",
                "warning",
                error=str(exc),
                seconds=seconds,
                last_ok_s_ago=self._since_ok(),
            )
            self._finish(result)
            return result
        finally:
            self.poll_watch.end()
        for event in state.events:
            self.events.add(event)
        for path, reason in state.skipped:
            self._once(f"skipped:{path}", "object_skipped", path=path, reason=reason)
        result = PollResult(ok=True, source=state.source, calls=state.calls)
        self._sync(state, result, wait)
        result.seconds = round(time.monotonic() - started, 3)
        self.metrics.polls.labels("ok").inc()
        self.metrics.poll_calls.set(state.calls)
        self.metrics.catalog_source.set(1 if state.source == "catalog" else 0)
        self.metrics.last_poll.set(time.time())
        self._last_ok_at = time.time()
        self._finish(result)
        return result

    def _once(self, key: str, name: str, **fields: Any) -> None:
        if key not in self._seen_problems:
            self._seen_problems.add(key)
            self.events.emit(name, "warning", **fields)

    def _sync(self, state: RemoteState, result: PollResult, wait: bool) -> None:
        """Plan, and hand each model its op (``remote_model_puller.workers``); with ``wait``,
        also wait for the installs this pass started (one-shot use and tests)."""
        inventory = self.layout.inventory()
        local = {
            m: {v: (r.fingerprint if r else None) for v, r in vs.items()}
            for m, vs in inventory.items()
        }
        remote = {
            m: {v: ref.fingerprint for v, ref in vs.items()} for m, vs in state.versions.items()
        }
        plan = plan_sync(remote, local, state.policy, self.settings.node.node_id)
        self._wanted = {m: sorted(vs) for m, vs in plan.wanted.items()}
        for problem in plan.problems:
            self._once(f"problem:{problem}", "policy_target_missing", detail=problem)
        now = time.monotonic()
        tasks: dict[str, list[InstallTask]] = {}
        for item in plan.installs:
            ref = state.versions[item.model][item.version]
            with self._lock:
                fail = self._failures.get(ref.failure_key)
            if fail is None or fail.next_at <= now:
                task = InstallTask(
                    item.model,
                    item.version,
                    item.fingerprint,
                    item.reason,
                    ref.failure_key,
                    ref.listing,
                )
                tasks.setdefault(item.model, []).append(task)
        futures = [
            self.workers.offer(ModelOp(m, plan.wanted.get(m, frozenset()), tuple(tasks.get(m, ()))))
            for m in sorted(set(plan.wanted) | self.workers.models())
        ]
        if wait:
            for fut in futures:
                for outcome in fut.result():
                    if outcome.record is not None:
                        result.installed.append((outcome.task.model, outcome.task.version))
                    elif outcome.error is not None and outcome.error.kind != "stopped":
                        t = outcome.task
                        result.failed.append((t.model, t.version, outcome.error.kind))
        self.metrics.versions.set(sum(len(vs) for vs in self.layout.versions_on_disk().values()))

    def _install(self, task: InstallTask, cancel: threading.Event) -> InstallRecord:
        """One install, in its model's worker thread, with a file pool of its own."""
        if task.reason == "changed":
            self.events.emit(
                "version_changed_remotely",
                "warning",
                model=task.model,
                version=task.version,
                fingerprint=task.fingerprint,
            )
        workers = self.settings.download_workers
        with ThreadPoolExecutor(workers, thread_name_prefix=f"download-{task.model}") as pool:
            installer = self.installer.for_install(cancel, pool)
            return installer.install(task.model, task.version, task.fingerprint, task.listing)

    def _installed(self, task: InstallTask) -> bool:
        record = self.layout.read_record(task.model, task.version)
        return record is not None and record.fingerprint == task.fingerprint

    def _done(self, outcome: Outcome) -> None:
        """Every install's outcome, in its model's worker thread: failures back off, events."""
        task = outcome.task
        if outcome.cancelled:
            self.metrics.installs.labels("cancelled").inc()
            self.events.emit(
                "install_cancelled",
                model=task.model,
                version=task.version,
                reason="the policy no longer wants it, or its content changed",
            )
            return
        exc = outcome.error
        if exc is not None:
            if exc.kind == "stopped":
                return
            with self._lock:
                fail = self._failures.get(task.failure_key)
                count = fail.count + 1 if fail else 1
                if exc.kind in PERMANENT:  # retried only when the version's content changes
                    delay = math.inf
                else:
                    delay = min(self.settings.backoff_max_s, 2.0 ** min(count, 16))
                    delay *= random.uniform(0.5, 1.0)
                self._failures[task.failure_key] = _Failure(
                    count, time.monotonic() + delay, exc.kind, str(exc)
                )
            self.metrics.installs.labels(exc.kind).inc()
            self.events.emit(
                PERMANENT.get(exc.kind, "install_failed"),
                "error" if exc.kind != "changed" else "warning",
                model=task.model,
                version=task.version,
                kind=exc.kind,
                error=str(exc),
                attempt=count,
                retry_in_s=None if delay == math.inf else round(delay, 1),
            )
            return
        record = outcome.record
        if record is None:  # already on disk with this content
            return
        with self._lock:
            self._failures.pop(task.failure_key, None)
        self.metrics.installs.labels("ok").inc()
        self.metrics.install_bytes.inc(record.bytes)
        self.metrics.install_seconds.observe(record.seconds)
        self.metrics.versions.set(sum(len(vs) for vs in self.layout.versions_on_disk().values()))
        self.events.emit(
            "version_installed",
            model=task.model,
            version=task.version,
            bytes=record.bytes,
            seconds=record.seconds,
            files=len(record.files),
            reason=task.reason,
        )

    def _finish(self, result: PollResult) -> None:
        for kind, n in self.store.calls.items():
            delta = n - self._calls_seen[kind]
            if delta > 0:
                self.metrics.storage_calls.labels(kind).inc(delta)
                self._calls_seen[kind] = n
        with self._lock:
            self._last = result

    # --- loop and HTTP -------------------------------------------------------------------------
    def run(self) -> None:
        if self.settings.watch:
            self.watch = start_watch(
                self.settings.node,
                lambda: self.view.seen,
                self.sync_event.set,
                self.events,
                self.stop_event,
            )
        self.poll_watch.watch(self.stop_event)
        while not self.stop_event.is_set():
            self.sync_event.clear()
            try:
                self.tick(wait=False)
            except OSError as exc:  # the local disk failed us: an event, then try again
                self.events.emit("tick_failed", "error", error=str(exc))
            self.sync_event.wait(self.settings.poll_s)
            if self.stop_event.is_set():
                break

    def status(self) -> dict[str, Any]:
        inventory = self.layout.inventory()
        with self._lock:
            last = self._last
        events = [e.to_json() for e in self.events.recent(50)]
        return {
            "node_id": self.settings.node.node_id,
            "role": "puller",
            "model_root": str(self.settings.model_root),
            "source": self.view.source,
            "watch": None
            if self.watch is None
            else {"url": self.watch.url, "up": self.watch.up, "woken": self.watch.woken},
            "last_poll": None
            if last is None
            else {
                "ok": last.ok,
                "source": last.source,
                "storage_calls": last.calls,
                "seconds": last.seconds,
                "error": last.error,
                "installed": [f"{m}/{v}" for m, v in last.installed],
                "failed": [f"{m}/{v}: {k}" for m, v, k in last.failed],
            },
            "last_ok_at": self._last_ok_at,
            "wanted": self._wanted,
            "installing": [f"{t.model}/{t.version}" for t in self.workers.running()],
            "installed": {
                m: {
                    str(v): None
                    if r is None
                    else {
                        "fingerprint": r.fingerprint,
                        "bytes": r.bytes,
                        "installed_at": r.installed_at,
                    }
                    for v, r in vs.items()
                }
                for m, vs in inventory.items()
            },
            "failures": [
                {"model": m, "version": v, "kind": f.kind, "error": f.message, "attempts": f.count}
                for (m, v, _fp, _mk), f in self._failures.items()
            ],
            "events": events,
        }

    def summary(self) -> PullerStatus:
        """What the master needs of this node (heartbeat status)."""
        with self._lock:
            last = self._last
        try:
            disk_free: int | None = shutil.disk_usage(self.layout.root).free
        except OSError:
            disk_free = None
        return {
            "installed": {m: sorted(vs) for m, vs in self.layout.versions_on_disk().items()},
            "wanted": self._wanted,
            "source": self.view.source,
            "disk_free_bytes": disk_free,
            "last_poll_ok": None if last is None else last.ok,
            "last_ok_at": self._last_ok_at,
            "failures": [f"{m}/{v}: {f.kind}" for (m, v, _, _), f in self._failures.items()],
        }

    def _since_ok(self) -> float | None:
        return None if self._last_ok_at is None else round(time.time() - self._last_ok_at, 1)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Ready once a poll succeeded and while polls keep succeeding: a node that cannot
        read the bucket for ``stale_after`` is not ready (what is installed keeps serving)."""
        since = self._since_ok()
        reason = None
        if since is None:
            reason = "no successful poll of the bucket yet"
        elif since > self.settings.stale_after:
            reason = (
                f"no successful poll of the bucket for {since:.0f} s "
                f"(MODELSYNC_STALE_AFTER_S={self.settings.stale_after:g})"
            )
        elif not os.access(self.layout.root, os.W_OK):
            reason = f"{self.layout.root} is not writable"
        with self._lock:
            last = self._last
        return reason is None, {
            "last_ok_at": self._last_ok_at,
            "reason": reason,
            "last_error": last.error if last and not last.ok else None,
        }

    def close(self) -> None:
        self.stop_event.set()
        self.sync_event.set()
        self.workers.stop()
        self.layout.sweep_incoming()


def main(port: int | None = None) -> int:
    settings = PullerSettings.from_env()
    settings = replace(settings, node=settings.node.with_port(port))
    store = settings.store
    where = {"model_root": str(settings.model_root), "bucket": store.bucket, "prefix": store.prefix}
    unreachable = require_bucket(store)  # a missing bucket: one line, exit 2
    if unreachable:  # transient: the poll loop keeps retrying
        where["unreachable_at_start"] = unreachable
    return serve(settings.node, lambda: Puller(settings), log, **where, poll_s=settings.poll_s)
