"""Helpers shared by the e2e tests (importable: conftest puts this folder on sys.path)."""

from __future__ import annotations

import helpers  # tests/helpers.py

from modelsync.dev.containers import ROOT, sh  # one `sh` for the e2e tests and the harness

__all__ = ["ROOT", "sh", "wait_for"]


def wait_for(fn, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    """tests/helpers.wait_for at the pace of containers; any error counts as "not yet"."""
    return helpers.wait_for(fn, timeout_s, what, interval_s=0.5, errors=(Exception,))
