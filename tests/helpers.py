"""Helpers every test suite shares (tests/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(fn: Callable[[], T], timeout_s: float = 60.0, what: str = "condition", *,
             interval_s: float = 0.1,
             errors: tuple[type[BaseException], ...] = ()) -> T:
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
