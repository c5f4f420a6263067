"""The watch: nodes hold a request to the master (``GET /v1/watch``, a stream of JSON lines;
the master never opens a connection to a node). The first line says which generations of the
catalog and the policy the master knows, and so does a new line as soon as either changes (and
one every ``keepalive_s`` with nothing new, so a node sees a dead master within a bounded time).
A line only says "look now": a node that saw an older generation reads the bucket, which stays
the source of truth.

Why a stream rather than a long poll answered once per change: a change then costs one small
write per held watch (measured: about 25 ms of the master's time for 500 watches), where
answering and re-opening 500 requests cost half a second of the one interpreter that also
answers the heartbeats.

The master learns generations wherever it meets them — its own catalog and policy writes, the
rollout controller's reads of the policy every ``rollout_s``, the catalog writer's stat every
``catalog_s`` — and the hub wakes every waiter at once. GCS generations of one object only
grow, so "newer" is a comparison, and a node that saw more than the master knows simply waits.

Each held watch takes one of ``watch_max`` slots and a thread of the gunicorn worker; the
worker has ``MODELSYNC_MASTER_THREADS`` more threads than slots, so held watches can never take
the threads the API needs (``master.server``). With every slot taken a watch is refused at once
(503) and that node polls the bucket, as with no master; it tries again later.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from modelsync.watch import Generations, newer

__all__ = ["Generations", "WatchHub", "newer"]


class WatchHub:
    def __init__(self, max_watchers: int) -> None:
        self.max_watchers = max_watchers
        self._cond = threading.Condition()
        self._known = Generations()
        self._held = 0
        self._closed = False
        self.answered = 0  # watches answered because something changed (metrics)

    @property
    def known(self) -> Generations:
        with self._cond:
            return self._known

    @property
    def held(self) -> int:
        with self._cond:
            return self._held

    def learn(self, catalog: int | None = None, policy: int | None = None) -> bool:
        """The master met these generations; wakes the waiters when one is newer."""
        with self._cond:
            new = self._known.merged(Generations(catalog, policy))
            if new == self._known:
                return False
            self._known = new
            self._cond.notify_all()
            return True

    def enter(self) -> bool:
        """Take a slot for one held watch (False: every slot is taken, or closing)."""
        with self._cond:
            if self._closed or self._held >= self.max_watchers:
                return False
            self._held += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._held -= 1

    def wait(self, seen: Generations, timeout_s: float) -> tuple[Generations, bool] | None:
        """Wait until something newer than ``seen`` is known, up to ``timeout_s``: (what the
        master knows, whether it is newer). None when the hub closes (the master stops)."""
        with self._cond:
            changed = self._cond.wait_for(
                lambda: self._closed or newer(self._known, seen), timeout=timeout_s
            )
            if self._closed:
                return None
            if changed:
                self.answered += 1
            return self._known, bool(changed)

    def lines(self, keepalive_s: float) -> Iterator[Generations]:
        """What one held watch streams: what the master knows now, then again at each change
        and every ``keepalive_s``; ends when the hub closes."""
        known = self.known
        yield known
        while True:
            answer = self.wait(known, keepalive_s)
            if answer is None:
                return
            known = answer[0]
            yield known

    def close(self) -> None:
        """Answer every held watch now (the worker is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
