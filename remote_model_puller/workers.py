"""A queue and a worker per model: installs of one model run one after another in a thread of
its own, so a slow model never delays another model, and the sync pass that hands them out
never waits for them (KServe's agent keeps a queue per model in the same way).

Parts talk in typed messages: a sync pass sends each model a :class:`ModelOp` — what the
policy wants kept and what to install, newest first — and every install ends as one
:class:`Outcome`. A newer op replaces one its worker has not started; an install the newer op
no longer wants (the policy moved away from it, or the version's content changed) is cancelled
at once: the installer stops between chunks and removes its work directory, so nothing partial
is left. ``slots`` bounds how many models install at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from modelsync.layout import RemoteVersion
from modelsync.local import InstallRecord
from remote_model_puller.installer import InstallError, Stopped

FailureKey = tuple[str, int, str, int | None]
SLOT_WAIT_S = 0.2


@dataclass(frozen=True)
class InstallTask:
    model: str
    version: int
    fingerprint: str
    reason: str  # "missing" | "changed" | "unrecorded" (remote_model_puller.planner.Install)
    failure_key: FailureKey
    listing: RemoteVersion | None = None  # set when the node listed the bucket itself


@dataclass(frozen=True)
class ModelOp:
    """What the latest sync pass wants of one model."""

    model: str
    wanted: frozenset[int]
    installs: tuple[InstallTask, ...] = ()

    def keeps(self, task: InstallTask) -> bool:
        """Whether an install under way still serves this op (same version, same content)."""
        if task.version not in self.wanted:
            return False
        again = [t for t in self.installs if t.version == task.version]
        return all(t.fingerprint == task.fingerprint for t in again)


@dataclass(frozen=True)
class Outcome:
    task: InstallTask
    record: InstallRecord | None = None
    error: InstallError | None = None
    cancelled: bool = False  # a newer op no longer wanted it
    skipped: bool = False  # already on disk with this content


@dataclass
class _Running:
    task: InstallTask
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Queue:
    pending: tuple[ModelOp, Future[list[Outcome]]] | None = None
    running: _Running | None = None
    thread: threading.Thread | None = None


Install = Callable[[InstallTask, threading.Event], InstallRecord]


class ModelWorkers:
    """``install(task, cancel)`` does one install (raising InstallError, kind ``stopped``
    when ``cancel`` was set); ``done(outcome)`` hears every outcome, in the worker's thread;
    ``installed(task)`` says whether the task's content is already on disk."""

    def __init__(
        self,
        install: Install,
        done: Callable[[Outcome], None],
        installed: Callable[[InstallTask], bool],
        slots: int,
    ) -> None:
        self._install = install
        self._done = done
        self._installed = installed
        self._slots = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._queues: dict[str, _Queue] = {}
        self._stopping = threading.Event()

    def models(self) -> set[str]:
        with self._lock:
            return set(self._queues)

    def offer(self, op: ModelOp) -> Future[list[Outcome]]:
        """Hand ``op`` to its model's worker. The future gives the outcomes of the installs
        this op ran (empty if a newer op replaced it before it started)."""
        fut: Future[list[Outcome]] = Future()
        with self._lock:
            q = self._queues.setdefault(op.model, _Queue())
            if q.pending is not None:
                q.pending[1].set_result([])
            running = q.running
            if running is not None and not op.keeps(running.task):
                running.cancel.set()
            if self._stopping.is_set() or (not op.installs and q.thread is None):
                q.pending = None
                fut.set_result([])
                if q.thread is None and q.running is None:
                    del self._queues[op.model]
                return fut
            q.pending = (op, fut)
            if q.thread is None:
                q.thread = threading.Thread(
                    target=self._work, args=(op.model, q), name=f"model-{op.model}", daemon=True
                )
                q.thread.start()
        return fut

    def running(self) -> list[InstallTask]:
        with self._lock:
            return [q.running.task for q in self._queues.values() if q.running is not None]

    def stop(self, timeout_s: float = 30.0) -> None:
        """Cancel every install under way and wait (bounded) for the workers to end."""
        with self._lock:
            self._stopping.set()
            threads = []
            for q in self._queues.values():
                if q.running is not None:
                    q.running.cancel.set()
                if q.pending is not None:
                    q.pending[1].set_result([])
                    q.pending = None
                if q.thread is not None:
                    threads.append(q.thread)
        for t in threads:
            t.join(timeout_s)

    # --- one model's worker ------------------------------------------------------------------
    def _work(self, model: str, q: _Queue) -> None:
        while True:
            with self._lock:
                item, q.pending = q.pending, None
                if item is None or self._stopping.is_set():
                    if item is not None:
                        item[1].set_result([])
                    q.thread = None
                    if self._queues.get(model) is q and q.running is None:
                        del self._queues[model]
                    return
            op, fut = item
            outcomes: list[Outcome] = []
            try:
                for task in op.installs:
                    with self._lock:
                        if q.pending is not None or self._stopping.is_set():
                            break  # a newer op decides what comes next
                        running = q.running = _Running(task)
                    try:
                        outcome = self._one(task, running.cancel)
                    finally:
                        with self._lock:
                            q.running = None
                    outcomes.append(outcome)
                    self._done(outcome)
            finally:
                fut.set_result(outcomes)

    def _one(self, task: InstallTask, cancel: threading.Event) -> Outcome:
        if self._installed(task):
            return Outcome(task, skipped=True)
        while not self._slots.acquire(timeout=SLOT_WAIT_S):
            if cancel.is_set():
                return self._cancelled(task)
        try:
            if cancel.is_set():
                return self._cancelled(task)
            return Outcome(task, record=self._install(task, cancel))
        except InstallError as exc:
            if exc.kind == "stopped" and cancel.is_set():
                return self._cancelled(task)
            return Outcome(task, error=exc)
        finally:
            self._slots.release()

    def _cancelled(self, task: InstallTask) -> Outcome:
        if self._stopping.is_set():  # the process stops: no event, nothing to retry
            return Outcome(task, error=Stopped())
        return Outcome(task, cancelled=True)
