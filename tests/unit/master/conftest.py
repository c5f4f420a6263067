"""The master's app on an in-memory bucket and a temporary SQLite file (no network)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from master_kit import ADMIN, master_app

from master.api import STATE_KEY
from master.state import MasterState
from modelsync.dev.memstore import MemoryStore

SM = ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001")


@pytest.fixture
def add_version(memstore: MemoryStore) -> Any:
    """add_version(model, version, marker=True): a complete SavedModel's objects."""

    def add(model: str, version: int, marker: bool = True) -> None:
        for name in SM:
            memstore.write(f"models/{model}/{version}/{name}", f"{model}{version}{name}".encode())
        if marker:
            memstore.write(f"models/{model}/{version}/_READY", b"")

    return add


class Client:
    def __init__(self, flask_client: FlaskClient) -> None:
        self.c = flask_client

    def call(
        self, method: str, path: str, token: str | None = ADMIN, body: Any = None, **kw: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        resp = self.c.open(path, method=method, json=body, headers=headers, **kw)
        return resp.status_code, resp.get_json(silent=True)


@pytest.fixture
def memstore() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def app(memstore: MemoryStore, tmp_path: Path) -> Iterator[Flask]:
    app = master_app(tmp_path / "m.sqlite3", memstore)
    yield app
    app.extensions[STATE_KEY].stop()


@pytest.fixture
def state(app: Flask) -> MasterState:
    s: MasterState = app.extensions[STATE_KEY]
    return s


@pytest.fixture
def api(app: Flask) -> Client:
    return Client(app.test_client())
