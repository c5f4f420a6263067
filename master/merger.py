"""The master's telemetry process: drains ``telemetry_inbox`` every ``flush_s`` (the merge and
the writes of the fleet's figures, ``master.telemetry.TelemetryStore.drain``) and compacts the
series every minute, so the gunicorn worker that answers heartbeats does neither: measured in
``bench master``, that work in the worker's interpreter held heartbeats behind it.

Started and watched by the worker that runs the master's background work
(:class:`MergerProcess`); it ends when that worker's end of its stdin closes (a dead worker
leaves no merger behind) or on SIGTERM. ``python -m master.merger DB RETENTION_S FLUSH_S``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from modelsync.log import configure_logging, get_logger

log = get_logger("master")
COMPACT_EVERY_S = 60.0
RESTART_PAUSE_S = (1.0, 30.0)  # after an unexpected exit: first and longest pause


def serve(db_path: str, retention_s: float, flush_s: float, stop: threading.Event) -> None:
    from master.db import Database
    from master.telemetry import TelemetryStore

    store = TelemetryStore(Database(db_path), retention_s, flush_s)
    last_compact = time.monotonic()
    while not stop.wait(flush_s):
        try:
            store.drain()
            if time.monotonic() - last_compact >= COMPACT_EVERY_S:
                last_compact = time.monotonic()
                store.compact(time.time())
        except Exception:
            log.exception("telemetry_drain_failed")
    try:
        store.drain()  # what came before the stop
    except Exception:
        log.exception("telemetry_drain_failed")


def _until_eof(stream: IO[bytes], stop: threading.Event) -> None:
    try:
        while stream.read(4096):
            pass
    except (OSError, ValueError):
        pass
    stop.set()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m master.merger DB RETENTION_S FLUSH_S", file=sys.stderr)
        return 2
    configure_logging("info", json_output=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_until_eof, args=(sys.stdin.buffer, stop), daemon=True).start()
    serve(args[0], float(args[1]), float(args[2]), stop)
    return 0


class MergerProcess:
    """Runs ``python -m master.merger`` for a master process and starts it again if it exits
    before :meth:`stop` (pausing 1 s, doubling to 30 s while it keeps failing)."""

    def __init__(self, db_path: str | Path, retention_s: float, flush_s: float = 1.0) -> None:
        self.cmd = [
            sys.executable,
            "-m",
            "master.merger",
            str(db_path),
            repr(float(retention_s)),
            repr(float(flush_s)),
        ]
        self._stop = threading.Event()
        self._proc: subprocess.Popen[Any] | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return None if proc is None or proc.poll() is not None else proc.pid

    def start(self) -> MergerProcess:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="merger", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        pause = RESTART_PAUSE_S[0]
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    return
                self._proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE)
                self.starts += 1
            started = time.monotonic()
            code = self._proc.wait()
            if self._stop.is_set():
                return
            log.warning("telemetry_process_exited", code=code, restart_in_s=pause)
            if time.monotonic() - started > 60:
                pause = RESTART_PAUSE_S[0]
            self._stop.wait(pause)
            pause = min(pause * 2, RESTART_PAUSE_S[1])

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close its stdin (it drains what is left and exits); SIGKILL after ``timeout_s``."""
        with self._lock:
            self._stop.set()
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


if __name__ == "__main__":
    raise SystemExit(main())
