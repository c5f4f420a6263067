"""The master and container models, on a real bucket (fake-gcs-server): the kind in the views,
start/stop through the policy (admin token, audited, in the OpenAPI document), and the routes a
gateway's heartbeat answer carries, per node, from what the reconciler recorded as running."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from helpers import wait_for
from master_kit import ADMIN, NODE, READ, master_settings

from master.app import STATE_KEY, create_app
from master.containers.service import META
from modelsync.container import Descriptor
from modelsync.nodeauth import node_token
from modelsync.publish import PublishOptions, publish, publish_image
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = [pytest.mark.integration]


@pytest.fixture
def app(store: GCSStore, store_settings: StoreSettings, tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        master_settings(tmp_path / "m.sqlite3", store=store_settings), store=store, background=False
    )
    yield app
    app.extensions[STATE_KEY].stop()


def call(
    app: Flask, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = app.test_client().open(path, method=method, json=body, headers=headers)
    return resp.status_code, resp.get_json()


def gateway_beat(
    app: Flask, node: str, ready: dict[str, list[int]] | None = None
) -> dict[str, Any]:
    status = {"url": "http://127.0.0.1:8080", "containers": ready or {}}
    status, answer = call(
        app,
        "POST",
        "/v1/nodes/heartbeat",
        node_token(NODE, node),
        {"node_id": node, "role": "gateway", "status": status},
    )
    assert status == 200, answer
    return answer


def test_kind_start_stop_and_routes(app: Flask, store: GCSStore, model_factory: Any) -> None:
    for tag in (1, 2):
        publish_image(store, Descriptor(f"127.0.0.1:5000/churn:{tag}"), "churn")
    publish(store, model_factory(2.0), "ranker", PublishOptions())
    state = app.extensions[STATE_KEY]
    state.refresh_catalog()
    status, view = call(app, "GET", "/v1/models/churn", READ)
    assert status == 200 and view["kind"] == "container"
    assert {v: e["kind"] for v, e in view["versions"].items()} == {
        "1": "container",
        "2": "container",
    }
    assert call(app, "GET", "/v1/models/ranker", READ)[1]["kind"] == "savedmodel"
    # what the reconciler records after a pass (Swarm runs both versions: a rollout keeps both)
    services = [
        {
            "model": "churn",
            "version": v,
            "service": f"modelsync-churn-v{v}",
            "host_port": 18000 + v,
            "replicas": 1,
            "image": "…",
            "running": 1,
            "tasks": [],
        }
        for v in (1, 2)
    ]
    state.db.set_meta(
        META, json.dumps({"at": 1.0, "services": services, "problems": [], "error": None})
    )
    answer = gateway_beat(app, "n1")
    # every version that runs is routable by name; v2, the served one, is the latest
    assert answer["containers"] == {
        "churn": {"versions": {"1": 18001, "2": 18002}, "latest": 2, "labels": {}}
    }
    # a label keeps v1 served too
    assert call(app, "PUT", "/v1/models/churn/labels/stable", ADMIN, {"version": 1})[0] == 200
    state.policy_written()
    assert gateway_beat(app, "n1")["containers"]["churn"] == {
        "versions": {"1": 18001, "2": 18002},
        "latest": 2,
        "labels": {"stable": 1},
    }
    # stop: read token refused, admin audited; the routes go; start: back
    assert call(app, "POST", "/v1/models/churn/stop", READ)[0] == 403
    status, doc = call(app, "POST", "/v1/models/churn/stop", ADMIN)
    assert status == 200 and doc["policy"]["disabled"] is True, doc
    assert gateway_beat(app, "n1")["containers"] == {}
    status, doc = call(app, "POST", "/v1/models/churn/start", ADMIN)
    assert status == 200 and doc["policy"]["disabled"] is False
    assert set(gateway_beat(app, "n1")["containers"]["churn"]["versions"]) == {"1", "2"}
    events = call(app, "GET", "/v1/events?model=churn&limit=20", READ)[1]["events"]
    audited = [(e["event"], e["detail"]["actor"]) for e in events if e["kind"] == "audit"]
    assert ("model_stopped", "admin") in audited and ("model_started", "admin") in audited
    assert call(app, "POST", "/v1/models/nothing/stop", ADMIN)[0] == 404
    status, running = call(app, "GET", "/v1/containers", READ)
    assert status == 200 and [s["service"] for s in running["services"]] == [
        "modelsync-churn-v1",
        "modelsync-churn-v2",
    ]
    paths = call(app, "GET", "/v1/openapi.json", READ)[1]["paths"]
    assert {"/v1/models/{model}/stop", "/v1/models/{model}/start", "/v1/containers"} <= set(paths)
    # other roles' answers carry no routes
    status, answer = call(
        app,
        "POST",
        "/v1/nodes/heartbeat",
        node_token(NODE, "n1"),
        {"node_id": "n1", "role": "puller", "status": {}},
    )
    assert status == 200 and "containers" not in answer


def test_gateways_report_container_versions_available(app: Flask, store: GCSStore) -> None:
    """A gateway's report of the versions whose /ping answers is what AVAILABLE is for a
    container model: the model view, convergence and the rollout controller's nodes use it."""
    publish_image(store, Descriptor("127.0.0.1:5000/churn:1"), "churn")
    app.extensions[STATE_KEY].refresh_catalog()
    gateway_beat(app, "n1", {"churn": [1]})
    gateway_beat(app, "n2", {})
    view = call(app, "GET", "/v1/models/churn", READ)[1]
    assert view["serving_nodes"] == 2 and view["converged"] is False
    assert view["versions"]["1"]["available"] == ["n1"]
    gateway_beat(app, "n2", {"churn": [1]})
    view = call(app, "GET", "/v1/models/churn", READ)[1]
    assert view["versions"]["1"]["available"] == ["n1", "n2"] and view["converged"] is True
    assert view["serving_versions"] == [1]


def test_a_container_models_view_says_why_its_containers_do_not_run(
    app: Flask, store: GCSStore, model_factory: Any
) -> None:
    """A master that cannot run containers says so on each container model (not on a TF
    model), and so does a plan's problem with one of the model's versions."""
    publish_image(store, Descriptor("127.0.0.1:5000/churn:1"), "churn")
    publish(store, model_factory(2.0), "ranker", PublishOptions())
    state = app.extensions[STATE_KEY]
    state.refresh_catalog()
    state.containers.settings = replace(state.containers.settings, docker="off")
    assert state.containers.start(threading.Event()) is False
    problems = call(app, "GET", "/v1/models/churn", READ)[1]["problems"]
    assert problems == [
        "Containers: container models are not run by this master: MODELSYNC_DOCKER=off"
    ]
    assert call(app, "GET", "/v1/models/ranker", READ)[1]["problems"] == []
    # a pass's problems: only the model's own
    doc = {
        "at": 1.0,
        "services": [],
        "problems": ["churn/1: not run: no ready node", "other/3: not run: no ready node"],
        "error": None,
    }
    state.db.set_meta(META, json.dumps(doc))
    wait_for(
        lambda: (
            call(app, "GET", "/v1/models/churn", READ)[1]["problems"]
            == ["churn/1: not run: no ready node"]
        ),
        10,
        "the pass's problem with churn/1, and only it, in churn's view",
    )
