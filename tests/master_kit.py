"""The master's app in-process for tests: settings with the test tokens, on an in-memory bucket
(tests/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from master.app import create_app
from master.settings import MasterSettings
from modelsync.dev.memstore import MemoryStore
from modelsync.settings import StoreSettings

ADMIN, READ, NODE = "admin-token-0123456789", "read-token-0123456789", "node-token-0123456789"


def master_settings(db_path: Path, **kw: Any) -> MasterSettings:
    """The test tokens (NODE is the node secret), no Docker, no background jobs; ``kw``
    overrides."""
    base: dict[str, Any] = {
        "store": StoreSettings(bucket="b"),
        "db_path": db_path,
        "admin_token": ADMIN,
        "node_secret": NODE,
        "read_token": READ,
        "docker": "off",
        "run_background": False,
    }
    return MasterSettings(**{**base, **kw})


def master_app(db_path: Path, store: MemoryStore | None = None, **kw: Any) -> Flask:
    return create_app(master_settings(db_path, **kw), store=store or MemoryStore())
