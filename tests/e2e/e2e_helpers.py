"""Helpers shared by the e2e tests (importable: conftest puts this folder on sys.path)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import helpers  # tests/helpers.py

ROOT = Path(__file__).resolve().parents[2]


def sh(
    *args: str, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({res.returncode}):\n"
            f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res


def wait_for(fn, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    """tests/helpers.wait_for at the pace of containers; any error counts as "not yet"."""
    return helpers.wait_for(fn, timeout_s, what, interval_s=0.5, errors=(Exception,))
