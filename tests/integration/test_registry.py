"""Registry parity (issue #20, part 2), on a real bucket (fake-gcs-server) with the master's app
in-process: who published each version and its description and tags from the manifest to the
API and `modelsync list`; edits kept in the bucket's annotations object; named admin tokens and
an actor on every audit entry; publishing a .tar.gz through the master with the checks of
`modelsync publish`; and what the master itself says (manifest_mismatch, 404s, echoes)."""

from __future__ import annotations

import getpass
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from master_kit import ADMIN, READ, master_settings

from master.api import STATE_KEY
from master.app import create_app
from modelsync.annotations import parse_annotations
from modelsync.catalog import annotations_object, policy_object
from modelsync.layout import version_prefix
from modelsync.policy import parse_policy
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = [pytest.mark.integration]
ANA = "ana-token-0123456789abc"


@pytest.fixture
def app(store: GCSStore, store_settings: StoreSettings, tmp_path: Path) -> Iterator[Flask]:
    app = master_app(store, store_settings, tmp_path / "m.sqlite3")
    yield app
    app.extensions[STATE_KEY].stop()


def master_app(store: GCSStore, settings: StoreSettings, db: Path, **kw: Any) -> Flask:
    s = master_settings(db, store=settings, admin_tokens={"ana": ANA}, **kw)
    return create_app(s, store=store, background=False)


def refresh(app: Flask) -> None:
    app.extensions[STATE_KEY].refresh_catalog()


def call(
    client: FlaskClient, method: str, path: str, token: str | None = READ, body: Any = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = client.open(path, method=method, json=body, headers=headers)
    return resp.status_code, resp.get_json()


def tarball(src: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
    return out.getvalue()


def run_list(settings: StoreSettings) -> str:
    env = {
        **os.environ,
        "MODELSYNC_BUCKET": settings.bucket,
        "STORAGE_EMULATOR_HOST": settings.emulator_host or "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_publisher_description_and_tags_reach_the_api_and_the_list(
    app: Flask, store: GCSStore, store_settings: StoreSettings, model_factory: Callable[..., Path]
) -> None:
    options = PublishOptions(description="ranker on March data", tags={"dataset": "2026-03"})
    publish(store, model_factory(2.0), "ranker", options)
    publish(store, model_factory(3.0), "ranker")
    refresh(app)
    status, view = call(app.test_client(), "GET", "/v1/models/ranker")
    assert status == 200
    v1, v2 = view["versions"]["1"], view["versions"]["2"]
    assert v1["publisher"]["user"] == getpass.getuser() and v1["publisher"]["tool"]
    assert v1["description"] == "ranker on March data" and v1["tags"] == {"dataset": "2026-03"}
    assert v1["edited_by"] is None
    assert v2["description"] == "" and v2["tags"] == {} and v2["publisher"] is not None
    text = run_list(store_settings)
    assert f"published by {getpass.getuser()}@" in text
    assert "description: ranker on March data" in text and "tags: dataset=2026-03" in text


def test_edits_live_in_the_bucket_with_who_made_them(
    app: Flask,
    store: GCSStore,
    store_settings: StoreSettings,
    model_factory: Callable[..., Path],
    tmp_path: Path,
) -> None:
    publish(store, model_factory(2.0), "ranker", PublishOptions(tags={"a": "1"}))
    refresh(app)
    client = app.test_client()
    path = "/v1/models/ranker/versions/1"
    assert call(client, "PATCH", path, READ, {"description": "x"})[0] == 403
    assert call(client, "PATCH", path, ANA, {"tags": {"bad key": "x"}})[0] == 400
    assert call(client, "PATCH", path, ANA, {"colour": "x"})[0] == 400
    assert (
        call(client, "PATCH", "/v1/models/ranker/versions/9", ANA, {"description": "x"})[0] == 404
    )
    status, doc = call(client, "PATCH", path, ANA, {"description": "the good one"})
    assert status == 200 and doc["edited_by"] == "ana", doc
    assert doc["description"] == "the good one" and doc["tags"] == {"a": "1"}  # kept
    note = parse_annotations(store.read(annotations_object("models"))).get("ranker", 1)
    assert note is not None and (note.by, note.description) == ("ana", "the good one")
    # a new master (another database) reads the same from the bucket
    other = master_app(store, store_settings, tmp_path / "other.sqlite3")
    try:
        refresh(other)
        _status, view = call(other.test_client(), "GET", "/v1/models/ranker")
        assert view["versions"]["1"]["description"] == "the good one"
        assert view["versions"]["1"]["edited_by"] == "ana"
    finally:
        other.extensions[STATE_KEY].stop()
    _status, events = call(client, "GET", "/v1/events?kind=audit&model=ranker")
    (edit,) = [e for e in events["events"] if e["event"] == "version_annotated"]
    assert edit["actor"] == "ana" and edit["detail"]["version"] == 1
    assert "edited by ana" in run_list(store_settings)


def test_every_audit_entry_names_its_actor(
    app: Flask, store: GCSStore, model_factory: Callable[..., Path]
) -> None:
    publish(store, model_factory(2.0), "m")
    refresh(app)
    client = app.test_client()
    assert call(client, "POST", "/v1/models/m/pin", ANA, {"version": 1})[0] == 200
    assert call(client, "DELETE", "/v1/models/m/pin", ADMIN)[0] == 200
    assert call(client, "POST", "/v1/sync", ANA)[0] == 200
    resp = client.post("/login", data={"token": ANA, "next": "/"})
    assert resp.status_code == 303
    _status, doc = call(client, "GET", "/v1/events?kind=audit", ADMIN)
    actors = {e["event"]: e["actor"] for e in doc["events"]}
    assert actors == {
        "model_pinned": "ana",
        "model_unpinned": "admin",
        "sync_requested": "ana",
        "console_signed_in": "ana",
    }, doc["events"]
    assert all(e["actor"] for e in doc["events"])


def test_a_tarball_uploaded_through_the_master_is_published_with_the_same_checks(
    app: Flask, store: GCSStore, model_factory: Callable[..., Path]
) -> None:
    client = app.test_client()
    data = tarball(model_factory(2.0))
    headers = {"Authorization": f"Bearer {ANA}", "Content-Type": "application/gzip"}
    url = "/v1/models/uploaded/versions?description=from+the+console&tag=team=search&tag=x=1"
    resp = client.post(url, data=data, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    published = resp.get_json()["published"]
    assert published["version"] == 1 and published["files"] == 1
    assert store.stat(version_prefix("models", "uploaded", 1) + "model.tar.gz") is not None
    refresh(app)
    _status, view = call(client, "GET", "/v1/models/uploaded")
    v1 = view["versions"]["1"]
    assert v1["complete"] and v1["manifest"] == "verified"
    assert v1["publisher"]["user"] == "ana" and "upload" in v1["publisher"]["tool"]
    assert v1["description"] == "from the console" and v1["tags"] == {"team": "search", "x": "1"}
    # the same content again: nothing written; progress streamed as NDJSON lines
    resp = client.post(
        "/v1/models/uploaded/versions",
        data=data,
        headers={**headers, "Accept": "application/x-ndjson"},
    )
    lines = [json.loads(x) for x in resp.get_data(as_text=True).splitlines()]
    assert lines[0] == {"phase": "received", "bytes": len(data)}
    assert lines[-1]["phase"] == "done" and lines[-1]["status"] == 200
    assert lines[-1]["published"]["unchanged"] is True
    # what modelsync publish refuses is refused here, and nothing is written
    bad = client.post("/v1/models/junk/versions", data=b"not a tarball", headers=headers)
    assert bad.status_code == 400 and "tar" in bad.get_json()["error"], bad.get_json()
    assert store.list_objects("models/junk/") == []
    exists = client.post("/v1/models/uploaded/versions?version=1", data=data, headers=headers)
    assert exists.status_code == 409, exists.get_json()
    assert (
        client.post(
            url, data=data, headers={**headers, "Authorization": f"Bearer {READ}"}
        ).status_code
        == 403
    )
    _status, doc = call(client, "GET", "/v1/events?kind=audit&model=uploaded", ADMIN)
    assert [e["actor"] for e in doc["events"] if e["event"] == "model_uploaded"] == ["ana", "ana"]


def test_an_upload_over_the_limit_is_refused_before_it_is_read(
    store: GCSStore, store_settings: StoreSettings, tmp_path: Path
) -> None:
    app = master_app(store, store_settings, tmp_path / "m.sqlite3", upload_max_bytes=1000)
    try:
        resp = app.test_client().post(
            "/v1/models/big/versions",
            data=b"x" * 2000,
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert resp.status_code == 413 and "MODELSYNC_UPLOAD_MAX_BYTES" in resp.get_json()["error"]
    finally:
        app.extensions[STATE_KEY].stop()


def test_a_version_changed_after_its_marker_is_one_event_per_content(
    app: Flask, store: GCSStore, model_factory: Callable[..., Path]
) -> None:
    publish(store, model_factory(2.0), "m")
    refresh(app)
    client = app.test_client()

    def mismatches() -> list[dict[str, Any]]:
        _status, doc = call(client, "GET", "/v1/events?kind=master&model=m")
        return [e for e in doc["events"] if e["event"] == "manifest_mismatch"]

    assert mismatches() == []
    name = version_prefix("models", "m", 1) + "assets.extra/modelsync_demo.txt"
    store.write(name, b"changed after _READY\n")
    refresh(app)
    refresh(app)
    (event,) = mismatches()
    assert event["detail"]["version"] == 1 and "modelsync_demo.txt" in event["detail"]["problem"]
    assert event["actor"] == "master"
    _status, view = call(client, "GET", "/v1/models/m")
    assert view["versions"]["1"]["manifest"] == "mismatch"
    store.write(name, b"changed again\n")  # new content: told again
    refresh(app)
    assert len(mismatches()) == 2


def test_pin_answers_tell_the_truth(
    app: Flask, store: GCSStore, model_factory: Callable[..., Path]
) -> None:
    for a in (2.0, 3.0, 4.0):
        publish(store, model_factory(a), "m")
    refresh(app)
    client = app.test_client()
    status, doc = call(client, "POST", "/v1/models/nosuch/pin", ADMIN, {"version": 1})
    assert status == 404 and "nosuch" in doc["error"]
    assert call(client, "POST", "/v1/models/nosuch/rollback", ADMIN)[0] == 404
    assert call(client, "POST", "/v1/models/m/pin", ADMIN, {"version": 9})[0] == 422
    assert call(client, "PUT", "/v1/models/m/labels/stable", ADMIN, {"version": 2})[0] == 200
    status, doc = call(client, "POST", "/v1/models/m/pin", ADMIN, {"version": 1})
    assert status == 200 and doc["policy"]["pin"] == 1
    assert doc["target_versions"] == [1, 2]  # the label keeps v2 serving beside the pin
    spec = {"canary_nodes": 1, "waves": [0.5, 1.0], "bake_s": 60}
    status, doc = call(client, "PUT", "/v1/models/m/rollout", ADMIN, spec)
    assert status == 200
    stored = parse_policy(store.read(policy_object("models"))).rollout_spec("m")
    assert stored is not None and doc["rollout_spec"] == stored.to_json()
    assert doc["policy"]["rollout"] == stored.to_json()
    assert doc["rollout_spec"]["bake_s"] == 60 and "max_error_rate" in doc["rollout_spec"]
