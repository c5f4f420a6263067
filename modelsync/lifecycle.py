"""The process lifecycle every command shares: SIGINT/SIGTERM only set flags, loops check them.

stop = install_stop_handlers(daemon.stop_event)   # also sets the daemon's own events
wait_for_stop(stop, timeout_s=60)                  # True once a signal arrived
"""

from __future__ import annotations

import signal
import threading


def install_stop_handlers(*also: threading.Event) -> threading.Event:
    """Route SIGINT and SIGTERM to a new event (and to ``also``); returns the event.

    Must be called from the main thread (Python runs signal handlers only there)."""
    stop = threading.Event()
    events = (stop, *also)

    def handler(_signum: int, _frame: object) -> None:
        for event in events:
            event.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def wait_for_stop(
    stop: threading.Event, timeout_s: float | None = None, poll_s: float = 0.2
) -> bool:
    """Block until ``stop`` is set or ``timeout_s`` passed; True if it was set.

    Waits in short slices so the main thread runs signal handlers promptly."""
    remaining = timeout_s
    while remaining is None or remaining > 0:
        step = poll_s if remaining is None else min(poll_s, remaining)
        if stop.wait(step):
            return True
        if remaining is not None:
            remaining -= step
    return stop.is_set()
