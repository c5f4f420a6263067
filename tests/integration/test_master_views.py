"""The master as a user meets it: JSON bodies whatever the content type, one node per node id,
"converged since" from the nodes' own reports, and reads that go on over a malformed policy."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from modelsync.catalog import policy_object
from modelsync.dev.procs import MasterSpec, Node, start_master
from modelsync.publish import publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN, READ, NODE = "admin-token-0123456789", "read-token-0123456789", "node-token-0123456789"


def call(
    url: str,
    method: str,
    path: str,
    token: str,
    data: bytes | None = None,
    content_type: str | None = None,
) -> tuple[int, Any]:
    req = urllib.request.Request(
        url + path, data=data, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def master(store_settings: StoreSettings, tmp_path: Path):  # type: ignore[no-untyped-def]
    proc = start_master(
        tmp_path,
        MasterSpec(
            bucket=store_settings.bucket,
            emulator_host=store_settings.emulator_host or "",
            admin_token=ADMIN,
            node_secret=NODE,
            read_token=READ,
            catalog_s=0.5,
        ),
    )
    yield proc
    assert proc.stop() == 0, proc.log_tail()


def complete(url: str, model: str, versions: list[int]) -> bool:
    code, doc = call(url, "GET", f"/v1/models/{model}", READ)
    return code == 200 and doc["versions_in_bucket"] == versions


def test_json_body_whatever_the_content_type(master, store: GCSStore, model_factory) -> None:  # type: ignore[no-untyped-def]
    publish(store, model_factory(2.0), "ranker")
    wait_for(lambda: complete(master.url, "ranker", [1]), 30, "v1 in the catalog")
    # what `curl -d '{"version": 1}'` sends: a form content type
    code, doc = call(
        master.url,
        "POST",
        "/v1/models/ranker/pin",
        ADMIN,
        b'{"version": 1}',
        "application/x-www-form-urlencoded",
    )
    assert code == 200 and doc["policy"]["pin"] == 1, doc
    code, doc = call(
        master.url, "POST", "/v1/models/ranker/pin", ADMIN, b"{version: 1}", "application/json"
    )
    assert code == 400 and "not valid JSON" in doc["error"] and "line 1" in doc["error"]
    code, doc = call(master.url, "POST", "/v1/models/ranker/pin", ADMIN, b"[1]")
    assert code == 400 and "JSON object" in doc["error"]


def test_one_node_per_node_id_and_converged_since_from_reports(
    master,
    store: GCSStore,
    store_settings: StoreSettings,
    model_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    node = Node(
        tmp_path / "node",
        bucket=store_settings.bucket,
        emulator_host=store_settings.emulator_host or "",
        name="node-1",
        poll_s=0.5,
        master_url=master.url,
        node_secret=NODE,
        extra_env={"MODELSYNC_HEARTBEAT_S": "0.5"},
    ).start()
    try:
        published_at = time.time()
        publish(store, model_factory(2.0), "demo")

        def converged() -> dict[str, Any] | None:
            doc = call(master.url, "GET", "/v1/cluster", READ)[1]
            demo = doc["models"].get("demo", {})
            return doc if demo.get("converged") else None

        doc = wait_for(converged, 90, "demo converged")
        seen_at = time.time()
        assert doc["nodes"] == {"total": 1, "live": 1, "degraded": 0, "stale": 0}
        since = doc["models"]["demo"]["since"]
        assert published_at <= since <= seen_at
        nodes = call(master.url, "GET", "/v1/nodes", READ)[1]["nodes"]
        assert len(nodes) == 1 and nodes[0]["node_id"] == "node-1"
        assert set(nodes[0]["roles"]) == {"puller", "config_manager"}
        assert all(r["state"] == "live" for r in nodes[0]["roles"].values())
        # read again later: the same moment, not the time of the read
        wait_for(lambda: time.time() > seen_at + 1, 5, "a second later")
        assert call(master.url, "GET", "/v1/cluster", READ)[1]["models"]["demo"]["since"] == since
        detail = call(master.url, "GET", "/v1/nodes/node-1", READ)[1]
        assert set(detail["roles"]) == {"puller", "config_manager"}
    finally:
        node.stop()


def test_malformed_policy_keeps_reads_and_refuses_writes(
    master,
    store: GCSStore,  # type: ignore[no-untyped-def]
    store_settings: StoreSettings,
    model_factory,
) -> None:
    for a in (2.0, 3.0):
        publish(store, model_factory(a), "demo")
    wait_for(lambda: complete(master.url, "demo", [1, 2]), 30, "v1, v2 in the catalog")
    assert call(master.url, "POST", "/v1/models/demo/pin", ADMIN, b'{"version": 1}')[0] == 200
    store.write(policy_object("models"), b'{"schema": 1, "models": {"demo": {"pinn": 2}}}')
    uri = f"gs://{store_settings.bucket}/models/_modelsync/policy.json"

    def told() -> bool:
        doc = call(master.url, "GET", "/v1/cluster", READ)[1]
        return any("malformed" in p for p in doc["problems"])

    wait_for(told, 30, "the cluster view reports the malformed policy")
    for path in ("/v1/cluster", "/v1/models", "/v1/models/demo"):
        code, doc = call(master.url, "GET", path, READ)
        assert code == 200, (path, doc)
        assert any(uri in p and "pinn" in p for p in doc["problems"]), (path, doc["problems"])
    # the last good policy stays in force
    doc = call(master.url, "GET", "/v1/models/demo", READ)[1]
    assert doc["target_versions"] == [1] and doc["policy"]["pin"] == 1
    code, doc = call(master.url, "DELETE", "/v1/models/demo/pin", ADMIN)
    assert code == 409 and uri in doc["error"]
    store.write(policy_object("models"), b'{"schema": 1}')  # fixed by hand
    wait_for(lambda: not told(), 30, "problem cleared")
    assert call(master.url, "GET", "/v1/models/demo", READ)[1]["target_versions"] == [2]
