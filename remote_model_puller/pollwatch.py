"""An overdue poll, told while it hangs.

A poll of the bucket has an overall deadline (``MODELSYNC_POLL_DEADLINE_S``, 30 s by default);
in a GCS outage a poll can hang until then, and only its end used to say so. The watch runs
beside the tick loop: once a poll has run for ``OVERDUE_POLLS`` times ``poll_s`` (at least
``MIN_OVERDUE_S``) it is a ``poll_overdue`` event (once per poll), and the metrics show it at
every scrape while it lasts: ``modelsync_puller_poll_running_seconds`` (the age of the poll
under way, 0 between polls) and ``modelsync_puller_poll_overdue`` (1 while overdue).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from modelsync.events import EventLog
from modelsync.metrics import DaemonMetrics

OVERDUE_POLLS = 3
MIN_OVERDUE_S = 1.0


class PollWatch:
    def __init__(
        self,
        poll_s: float,
        deadline_s: float,
        events: EventLog,
        metrics: DaemonMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.overdue_after_s = max(MIN_OVERDUE_S, OVERDUE_POLLS * poll_s)
        self.deadline_s = deadline_s
        self.events = events
        self._clock = clock
        self._lock = threading.Lock()
        self._started: float | None = None
        self._told = False
        running = metrics.gauge("poll_running_seconds", "Age of the poll under way (0: none).")
        running.set_function(self.running_s)
        overdue = metrics.gauge("poll_overdue", "1 while a poll runs past its expected time.")
        overdue.set_function(lambda: 1.0 if self.running_s() > self.overdue_after_s else 0.0)

    def begin(self) -> None:
        with self._lock:
            self._started, self._told = self._clock(), False

    def end(self) -> None:
        with self._lock:
            self._started = None

    def running_s(self) -> float:
        with self._lock:
            started = self._started
        return 0.0 if started is None else max(0.0, self._clock() - started)

    def check(self) -> bool:
        """Record the event if the poll under way is overdue and not told yet; True then."""
        running = self.running_s()
        with self._lock:
            if self._started is None or self._told or running <= self.overdue_after_s:
                return False
            self._told = True
        self.events.emit(
            "poll_overdue",
            "warning",
            running_s=round(running, 1),
            expected_s=self.overdue_after_s,
            deadline_s=self.deadline_s,
        )
        return True

    def watch(self, stop: threading.Event) -> threading.Thread:
        """Check every fraction of a second until ``stop``, in a thread of its own."""
        step = min(1.0, self.overdue_after_s / 4)

        def loop() -> None:
            while not stop.wait(step):
                self.check()

        thread = threading.Thread(target=loop, name="poll-watch", daemon=True)
        thread.start()
        return thread
