"""Helpers every test suite shares (tests/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from modelsync.dev.throttle import LinkProxy

T = TypeVar("T")


def wait_for(
    fn: Callable[[], T],
    timeout_s: float = 60.0,
    what: str = "condition",
    *,
    interval_s: float = 0.1,
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``fn`` until it returns something truthy and return that; exceptions of ``errors``
    count as "not yet". Fails with the last value or error after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except errors as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached in {timeout_s}s; last: {last!r}")
        time.sleep(interval_s)


def write_corrupt_version(store: Any, src: Any, model: str, version: int) -> None:
    """A version whose saved_model.pb is junk, with an empty marker: what a third-party
    publisher could write (``modelsync publish`` refuses it)."""
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src).as_posix()
        data = b"\x08\x01 not a SavedModel" if rel == "saved_model.pb" else path.read_bytes()
        store.write(f"models/{model}/{version}/{rel}", data)
    store.write(f"models/{model}/{version}/_READY", b"")


# A TCP forwarder on 127.0.0.1 that can turn into a blackhole (``proxy.blackhole.set()``)
Proxy = LinkProxy


def descendants(pid: int) -> list[int]:
    """Every live process under ``pid`` (its children in their own sessions too), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        out += kids
        todo += kids
    return out


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a process and everything it started (a failed test leaves no orphans)."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
