"""A search-like client for the cluster tests: name-only gRPC Predicts (no version, no label:
whatever the node serves), as Elasticsearch's scoring plugin sends them.

``SearchLoad`` sends to every worker's own address on a thread per worker and notes each
answer; its ``failover`` thread sends one request at a time to the workers in turn and, when
one fails, sends the same request to the next, as a client with a list of hosts does: its
request fails only when every worker failed it. Bounded in count and time.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import grpc

from modelsync.client import PredictClient
from modelsync.dev.cluster import Host

# reconnect soon after a worker comes back (gRPC's default backoff grows to 120 s)
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True)
class Answer:
    t: float  # time.time() when the answer (or the error) came
    worker: str  # the worker that answered; for failover requests, the last one tried
    version: int | None  # the version that answered; None on an error
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


class SearchLoad:
    def __init__(
        self, model: str, workers: list[Host], rps: float = 10, limit_s: float = 3600
    ) -> None:
        self.model, self.rps, self.deadline = model, rps, time.monotonic() + limit_s
        self.lock = threading.Lock()
        self.answers: list[Answer] = []
        self.failover_answers: list[Answer] = []
        self.stop = threading.Event()
        self.workers: dict[str, Host] = {}
        self._stops: dict[str, threading.Event] = {}
        self.threads: list[threading.Thread] = []
        for w in workers:
            self.add(w)
        self._start(self._failover)

    def _start(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def add(self, host: Host) -> None:
        with self.lock:
            self.workers[host.name] = host
            self._stops[host.name] = threading.Event()
        self._start(self._per_worker, host, self._stops[host.name])

    def remove(self, name: str) -> None:
        with self.lock:
            self.workers.pop(name, None)
            self._stops.pop(name).set()

    def _running(self, stop: threading.Event | None = None) -> bool:
        stopped = self.stop.is_set() or (stop is not None and stop.is_set())
        return not stopped and time.monotonic() < self.deadline

    def _per_worker(self, host: Host, stop: threading.Event) -> None:
        client = PredictClient(host.grpc, CHANNEL_OPTIONS)
        rng = random.Random(host.name)
        for _ in range(10_000_000):
            if not self._running(stop):
                break
            started = time.monotonic()
            answer = ask(client, self.model, host.name, rng.random(), timeout_s=5)
            with self.lock:
                self.answers.append(answer)
            self.stop.wait(max(0.0, 1 / self.rps - (time.monotonic() - started)))
        client.close()

    def _failover(self) -> None:
        clients: dict[str, PredictClient] = {}
        rng = random.Random(0)
        turn = 0
        for _ in range(10_000_000):
            if not self._running():
                break
            started = time.monotonic()
            with self.lock:
                hosts = dict(self.workers)
            names = sorted(hosts)
            if not names:
                self.stop.wait(0.1)
                continue
            turn += 1
            order = names[turn % len(names) :] + names[: turn % len(names)]
            x = rng.random()
            answer = Answer(time.time(), "-", None, "no worker")
            for name in order:  # the same request to the next worker when one fails
                if name not in clients:
                    clients[name] = PredictClient(hosts[name].grpc, CHANNEL_OPTIONS)
                answer = ask(clients[name], self.model, name, x, timeout_s=2)
                if answer.ok:
                    break
            with self.lock:
                self.failover_answers.append(answer)
            self.stop.wait(max(0.0, 1 / self.rps - (time.monotonic() - started)))
        for c in clients.values():
            c.close()

    def since(self, t0: float, worker: str | None = None) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if a.t >= t0 and worker in (None, a.worker)]

    def failover_since(self, t0: float) -> list[Answer]:
        with self.lock:
            return [a for a in self.failover_answers if a.t >= t0]

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def ask(client: PredictClient, model: str, worker: str, x: float, timeout_s: float) -> Answer:
    try:
        version, _out = client.predict(model, {"x": [x]}, timeout_s=timeout_s)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else None
        return Answer(time.time(), worker, None, f"{code}: {str(exc)[:120]}")
    return Answer(time.time(), worker, version)


def outages(answers: list[Answer]) -> list[tuple[float, float]]:
    """The windows in which a worker answered nothing: from its last good answer before an
    error to its first good answer after (answers of one worker, in time order)."""
    out: list[tuple[float, float]] = []
    last_ok: float | None = None
    down_since: float | None = None
    for a in answers:
        if a.ok:
            if down_since is not None:
                out.append((down_since, a.t))
                down_since = None
            last_ok = a.t
        elif down_since is None:
            down_since = last_ok if last_ok is not None else a.t
    if down_since is not None:
        out.append((down_since, float("inf")))
    return out
