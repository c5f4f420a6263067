"""The watch (issue #24): a node's held request is answered as soon as the catalog or the policy
has a newer generation than the node saw; held watches are bounded apart from the API's
threads; a publisher's word puts one version into the catalog at once, with a token that can
do nothing else."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from master_kit import ADMIN, NODE, READ, master_app

from master.api import STATE_KEY
from master.settings import MasterSettings
from master.watch import Generations, WatchHub, newer
from modelsync.catalog import catalog_object, parse_catalog
from modelsync.dev.memstore import MemoryStore
from modelsync.nodeauth import node_token
from modelsync.settings import Env, SettingsError

PUBLISH = "publish-token-0123456789"
N1 = node_token(NODE, "n1")
SM = ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001")


def add_version(store: MemoryStore, model: str, version: int, marker: bool = True) -> None:
    for name in SM:
        store.write(f"models/{model}/{version}/{name}", f"{model}{version}{name}".encode())
    if marker:
        store.write(f"models/{model}/{version}/_READY", b"")


def call(app: Flask, method: str, path: str, token: str | None, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = app.test_client().open(path, method=method, headers=headers, **kw)
    return resp.status_code, resp.get_json(silent=True)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def app(store: MemoryStore, tmp_path: Path) -> Any:
    app = master_app(tmp_path / "m.sqlite3", store, publish_token=PUBLISH, watch_max=2)
    yield app
    app.extensions[STATE_KEY].stop()


# --- the rule ----------------------------------------------------------------------------------
def test_newer_is_a_strictly_greater_generation_of_either_object() -> None:
    assert newer(Generations(5, 7), Generations(None, None))
    assert newer(Generations(5, 7), Generations(5, 6))
    assert newer(Generations(6, 7), Generations(5, 7))
    assert not newer(Generations(5, 7), Generations(5, 7))
    assert not newer(Generations(5, 7), Generations(9, 9))  # the node saw more: it waits
    assert not newer(Generations(None, None), Generations(None, None))
    assert newer(Generations(None, 0), Generations(None, None))  # "no policy" is news too


def test_the_hub_wakes_waiters_bounds_slots_and_closes() -> None:
    hub = WatchHub(max_watchers=1)
    assert hub.enter() and not hub.enter()  # one slot
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(hub.wait(Generations(1, 1), 10)))
    t.start()
    time.sleep(0.05)
    assert hub.learn(catalog=1)  # news to the hub, but not newer than the waiter saw
    time.sleep(0.05)
    assert t.is_alive() and got == []
    assert hub.learn(catalog=2)
    t.join(5)
    assert got == [(Generations(2, None), True)]
    assert not hub.learn(catalog=1)  # older: ignored
    assert hub.wait(Generations(2, None), 0.05) == (Generations(2, None), False)  # timeout
    hub.leave()
    assert hub.enter()
    hub.close()
    assert hub.wait(Generations(2, None), 10) is None and not hub.enter()


# --- the route ---------------------------------------------------------------------------------
class Stream:
    """A held watch through the app's test client: lines as they come."""

    def __init__(self, app: Flask, token: str = N1) -> None:
        self.resp = app.test_client().get(
            "/v1/watch", headers={"Authorization": f"Bearer {token}"}, buffered=False
        )
        self.status = self.resp.status_code
        self._it = iter(self.resp.response)

    def line(self) -> dict[str, Any]:
        return json.loads(next(self._it))

    def close(self) -> None:
        self.resp.close()


def test_a_watch_streams_what_the_master_knows_then_each_change(
    app: Flask, store: MemoryStore
) -> None:
    state = app.extensions[STATE_KEY]
    add_version(store, "m", 1)
    state.refresh_catalog()
    state.policies.read()  # the master learns the policy's generation (0: none yet)
    known = state.watch.known
    stream = Stream(app)
    assert stream.status == 200 and stream.resp.mimetype == "application/x-ndjson"
    assert stream.line() == {"catalog": known.catalog, "policy": 0}
    lines: list[tuple[dict[str, Any], float]] = []

    def read() -> None:
        t = time.monotonic()
        lines.append((stream.line(), time.monotonic() - t))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    assert call(app, "POST", "/v1/models/m/pin", ADMIN, json={"version": 1})[0] == 200
    reader.join(10)
    ((doc, seconds),) = lines
    assert doc["catalog"] == known.catalog and doc["policy"] > 0
    assert seconds < 5  # at the write, not at the keepalive (15 s)
    assert state.watch.held == 1
    stream.close()  # the node went away: its slot is free again
    assert state.watch.held == 0


def test_a_watch_gets_a_keepalive_line_with_nothing_new(tmp_path: Path) -> None:
    app = master_app(tmp_path / "m.sqlite3", MemoryStore(), watch_keepalive_s=1)
    try:
        app.extensions[STATE_KEY].watch.learn(catalog=5, policy=6)
        stream = Stream(app)
        started = time.monotonic()
        assert stream.line() == {"catalog": 5, "policy": 6}
        assert stream.line() == {"catalog": 5, "policy": 6}  # the keepalive
        assert 0.8 < time.monotonic() - started < 5
        stream.close()
    finally:
        app.extensions[STATE_KEY].stop()


def test_watches_past_the_slots_are_refused_at_once_and_the_api_answers(app: Flask) -> None:
    state = app.extensions[STATE_KEY]
    state.watch.learn(catalog=5, policy=5)
    streams = [Stream(app), Stream(app)]  # watch_max=2
    for st in streams:
        assert st.status == 200 and st.line() == {"catalog": 5, "policy": 5}
    assert state.watch.held == 2
    code, doc = call(app, "GET", "/v1/watch", N1)
    assert code == 503 and "MODELSYNC_WATCH_MAX" in doc["error"]
    assert call(app, "GET", "/v1/cluster", READ)[0] == 200  # the API is not starved
    state.watch.close()  # the worker stops: held watches end at once
    for st in streams:
        with pytest.raises(StopIteration):
            st.line()
        st.close()
    assert state.watch.held == 0


def test_only_a_node_token_watches(app: Flask) -> None:
    assert call(app, "GET", "/v1/watch", None)[0] == 401
    for token in (ADMIN, READ, PUBLISH):
        assert call(app, "GET", "/v1/watch", token)[0] == 403


# --- a publisher's word ---------------------------------------------------------------------------
def test_a_published_version_enters_the_catalog_at_once(app: Flask, store: MemoryStore) -> None:
    state = app.extensions[STATE_KEY]
    add_version(store, "m", 1)
    state.refresh_catalog()
    before = state.watch.known.catalog
    add_version(store, "m", 2)
    code, doc = call(
        app, "POST", "/v1/catalog/versions", PUBLISH, json={"model": "m", "version": 2}
    )
    assert code == 200 and doc["complete"] and doc["catalog_written"], doc
    catalog = parse_catalog(store.read(catalog_object("models")))
    assert catalog.complete_versions("m") == [1, 2]
    assert state.watch.known.catalog == doc["catalog_generation"] > before  # nodes woken
    again = call(app, "POST", "/v1/catalog/versions", PUBLISH, json={"model": "m", "version": 2})
    assert again[1]["catalog_written"] is False  # idempotent: told twice, written once
    add_version(store, "m", 3, marker=False)
    _, doc = call(app, "POST", "/v1/catalog/versions", ADMIN, json={"model": "m", "version": 3})
    assert doc["complete"] is False and doc["reason"]  # the bucket decides, not the request
    _, doc = call(app, "POST", "/v1/catalog/versions", ADMIN, json={"model": "m", "version": 9})
    assert doc["complete"] is False and doc["reason"] == "not in the bucket"


def test_the_publish_token_can_do_nothing_else(app: Flask) -> None:
    body = {"model": "m", "version": 1}
    assert call(app, "POST", "/v1/catalog/versions", None, json=body)[0] == 401
    assert call(app, "POST", "/v1/catalog/versions", READ, json=body)[0] == 403
    assert call(app, "POST", "/v1/catalog/versions", N1, json=body)[0] == 403
    for method, path in (("GET", "/v1/cluster"), ("GET", "/v1/models"), ("POST", "/v1/sync")):
        assert call(app, method, path, PUBLISH)[0] == 403, path
    assert call(app, "POST", "/v1/models/m/pin", PUBLISH, json={"version": 1})[0] == 403
    bad = {"model": "bad name", "version": 1}
    assert call(app, "POST", "/v1/catalog/versions", PUBLISH, json=bad)[0] == 400


def test_the_publish_token_must_differ_and_be_long(tmp_path: Path) -> None:
    base = {
        "MODELSYNC_BUCKET": "b",
        "MODELSYNC_ADMIN_TOKEN": ADMIN,
        "MODELSYNC_NODE_SECRET": NODE,
        "MODELSYNC_DB": str(tmp_path / "m.sqlite3"),
    }
    ok = MasterSettings.from_env(Env({**base, "MODELSYNC_PUBLISH_TOKEN": PUBLISH}))
    assert ok.publish_token == PUBLISH and ok.gunicorn_threads == ok.threads + ok.watch_max
    for bad in (ADMIN, "short"):
        with pytest.raises(SettingsError):
            MasterSettings.from_env(Env({**base, "MODELSYNC_PUBLISH_TOKEN": bad}))
    with pytest.raises(SettingsError, match="MODELSYNC_WATCH_MAX"):
        MasterSettings.from_env(Env({**base, "MODELSYNC_WATCH_MAX": "-1"}))
