"""A queue and a worker per model: a slow model never delays another one, a newer op replaces
one not started, and an install the newer op no longer wants is cancelled."""

from __future__ import annotations

import threading
import time

from modelsync.local import InstallRecord
from remote_model_puller.installer import InstallError, Stopped
from remote_model_puller.workers import InstallTask, ModelOp, ModelWorkers, Outcome


def task(model: str, version: int, fp: str = "fp") -> InstallTask:
    return InstallTask(model, version, fp, "missing", (model, version, fp, None))


def record(t: InstallTask) -> InstallRecord:
    return InstallRecord(t.model, t.version, t.fingerprint, "gs://b/", 1, time.time(), 0.0)


class Fake:
    """Installs that finish when released (or fail when told), and stop when cancelled."""

    def __init__(self) -> None:
        self.release: dict[tuple[str, int], threading.Event] = {}
        self.started: list[tuple[str, int]] = []
        self.outcomes: list[Outcome] = []
        self.on_disk: set[tuple[str, int, str]] = set()
        self.lock = threading.Lock()

    def gate(self, model: str, version: int) -> threading.Event:
        with self.lock:
            return self.release.setdefault((model, version), threading.Event())

    def install(self, t: InstallTask, cancel: threading.Event) -> InstallRecord:
        with self.lock:
            self.started.append((t.model, t.version))
        gate = self.gate(t.model, t.version)
        for _ in range(500):  # bounded: 10 s
            if cancel.is_set():
                raise Stopped()
            if gate.wait(0.02):
                if t.fingerprint == "bad":
                    raise InstallError("checksum", "bad bytes")
                self.on_disk.add((t.model, t.version, t.fingerprint))
                return record(t)
        raise AssertionError("never released")

    def done(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def installed(self, t: InstallTask) -> bool:
        return (t.model, t.version, t.fingerprint) in self.on_disk

    def workers(self, slots: int = 4) -> ModelWorkers:
        return ModelWorkers(self.install, self.done, self.installed, slots)


def wait_until(cond, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_slow_model_never_delays_another() -> None:
    fake = Fake()
    w = fake.workers()
    w.offer(ModelOp("big", frozenset({2}), (task("big", 2),)))
    fast = w.offer(ModelOp("small", frozenset({1}), (task("small", 1),)))
    fake.gate("small", 1).set()
    outcomes = fast.result(timeout=10)  # while "big" still downloads
    assert [o.record is not None for o in outcomes] == [True]
    assert [t.model for t in w.running()] == ["big"]
    fake.gate("big", 2).set()
    w.stop()


def test_an_install_the_policy_no_longer_wants_is_cancelled() -> None:
    fake = Fake()
    w = fake.workers()
    first = w.offer(ModelOp("m", frozenset({3, 2}), (task("m", 3),)))
    wait_until(lambda: fake.started == [("m", 3)])
    w.offer(ModelOp("m", frozenset({2}), ()))  # pinned to 2 (on disk): 3 is not wanted
    outcomes = first.result(timeout=10)
    assert [(o.task.version, o.cancelled) for o in outcomes] == [(3, True)]
    assert fake.outcomes[-1].cancelled and not w.running()
    w.stop()


def test_a_changed_content_cancels_the_old_install_and_installs_the_new() -> None:
    fake = Fake()
    w = fake.workers()
    first = w.offer(ModelOp("m", frozenset({3}), (task("m", 3, "old"),)))
    wait_until(lambda: fake.started == [("m", 3)])
    second = w.offer(ModelOp("m", frozenset({3}), (task("m", 3, "new"),)))
    assert first.result(timeout=10)[0].cancelled
    fake.gate("m", 3).set()
    (outcome,) = second.result(timeout=10)
    assert outcome.record is not None and outcome.record.fingerprint == "new"
    w.stop()


def test_the_same_op_again_keeps_the_install_and_skips_it_once_done() -> None:
    fake = Fake()
    w = fake.workers()
    first = w.offer(ModelOp("m", frozenset({3}), (task("m", 3),)))
    wait_until(lambda: fake.started == [("m", 3)])
    again = w.offer(ModelOp("m", frozenset({3}), (task("m", 3),)))  # the next poll
    fake.gate("m", 3).set()
    assert first.result(timeout=10)[0].record is not None
    assert again.result(timeout=10)[0].skipped  # on disk now: not downloaded twice
    assert fake.started == [("m", 3)]
    w.stop()


def test_a_newer_op_replaces_one_not_started() -> None:
    fake = Fake()
    w = fake.workers()
    w.offer(ModelOp("m", frozenset({1, 2}), (task("m", 2), task("m", 1))))
    wait_until(lambda: fake.started == [("m", 2)])
    stale = w.offer(ModelOp("m", frozenset({1, 2, 4}), (task("m", 4),)))
    newest = w.offer(ModelOp("m", frozenset({1, 2, 5}), (task("m", 2), task("m", 5))))
    assert stale.result(timeout=10) == []  # replaced before it started
    fake.gate("m", 2).set()
    fake.gate("m", 5).set()
    outcomes = newest.result(timeout=10)
    assert [(o.task.version, o.skipped) for o in outcomes] == [(2, True), (5, False)]
    assert ("m", 1) not in fake.started  # the first op's rest gave way to the newer op
    w.stop()


def test_slots_bound_the_models_installing_at_once() -> None:
    fake = Fake()
    w = fake.workers(slots=1)
    a = w.offer(ModelOp("a", frozenset({1}), (task("a", 1),)))
    wait_until(lambda: fake.started == [("a", 1)])
    b = w.offer(ModelOp("b", frozenset({1}), (task("b", 1),)))
    time.sleep(0.3)
    assert fake.started == [("a", 1)]  # b waits for the one slot
    w.offer(ModelOp("b", frozenset(), ()))  # and is cancelled while it waits
    assert b.result(timeout=10)[0].cancelled
    fake.gate("a", 1).set()
    assert a.result(timeout=10)[0].record is not None
    w.stop()


def test_failures_are_outcomes_and_stop_cancels_everything() -> None:
    fake = Fake()
    w = fake.workers()
    bad = w.offer(ModelOp("m", frozenset({1}), (task("m", 1, "bad"),)))
    fake.gate("m", 1).set()
    (outcome,) = bad.result(timeout=10)
    assert outcome.error is not None and outcome.error.kind == "checksum"
    hung = w.offer(ModelOp("n", frozenset({1}), (task("n", 1),)))
    wait_until(lambda: ("n", 1) in fake.started)
    w.stop(timeout_s=10)
    (stopped,) = hung.result(timeout=10)
    assert stopped.error is not None and stopped.error.kind == "stopped"
    assert not stopped.cancelled  # stopping is no cancellation event
    assert w.offer(ModelOp("n", frozenset({1}), (task("n", 1),))).result(timeout=1) == []
