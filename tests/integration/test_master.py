"""The master under gunicorn, with fake-gcs-server and real heartbeats from the node daemons."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from modelsync.catalog import LISTED_AT, catalog_object, parse_catalog, policy_object
from modelsync.dev.procs import MasterSpec, Node, start_master
from modelsync.nodeauth import node_token
from modelsync.policy import parse_policy
from modelsync.publish import publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN, READ, NODE = "admin-token-0123456789", "read-token-0123456789", "node-token-0123456789"
PUBLISH = "publish-token-0123456789"
N1 = node_token(NODE, "n1")  # node n1's own token (NODE is the master's node secret)


class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def opens(self, path: str, token: str) -> int:
        """The status of a GET whose answer is a held stream (closed unread)."""
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status)

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(
                    raw
                ) if r.headers.get_content_type() == "application/json" else raw
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw


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
            publish_token=PUBLISH,
            catalog_s=0.5,
            # the route walk below sends dozens of wrong tokens on purpose (the limit has its test)
            extra_env={"MODELSYNC_AUTH_FAILURES": "100000"},
        ),
    )
    yield proc, Api(proc.url)  # type: ignore[attr-defined]
    assert proc.stop() == 0, proc.log_tail()


def test_every_route_is_documented_and_guarded(master) -> None:  # type: ignore[no-untyped-def]
    proc, api = master
    status, doc = api.call("GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    from master.app import create_app  # the Flask routes, for the comparison
    from master.settings import MasterSettings

    settings = MasterSettings(
        store=StoreSettings(bucket="x"),
        db_path=Path(proc.log_path).parent / "routes.sqlite3",
        admin_token=ADMIN,
        node_secret=NODE,
        read_token=READ,
        run_background=False,
    )
    app = create_app(settings, store=object())  # type: ignore[arg-type]
    # the API (the console's HTML pages are not part of it: tests/browser covers them)
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule), m)
        for r in app.url_map.iter_rules()
        for m in r.methods - {"HEAD", "OPTIONS"}
        if r.endpoint != "static" and not r.endpoint.startswith("console.")
    }
    documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    samples = {
        "{model}": "demo",
        "{label}": "stable",
        "{node_id}": "n1",
        "{version}": "1",
        "{action}": "pause",
    }
    for path, ops in doc["paths"].items():
        concrete = path
        for k, v in samples.items():
            concrete = concrete.replace(k, v)
        for method, op in ops.items():
            schemes = [next(iter(s)) for s in op["security"]]
            if not schemes:
                assert api.call(method.upper(), concrete)[0] not in (401, 403), path
                continue
            assert api.call(method.upper(), concrete)[0] == 401, (method, path)
            assert api.call(method.upper(), concrete, token="not-a-token-at-all")[0] == 401
            right = {
                "readToken": READ,
                "adminToken": ADMIN,
                "nodeToken": N1,
                "publishToken": PUBLISH,
            }[schemes[0]]
            wrong = [
                t
                for t in (READ, ADMIN, N1, PUBLISH)
                if t != right and not (schemes[0] in ("readToken", "publishToken") and t == ADMIN)
            ]
            for token in wrong:
                assert api.call(method.upper(), concrete, token=token)[0] == 403, (
                    method,
                    path,
                    token,
                )
            if path == "/v1/watch":  # a held stream (JSON lines that never end): opened, not read
                assert api.opens(concrete, right) == 200, path
                continue
            assert api.call(method.upper(), concrete, token=right)[0] not in (401, 403)


def test_catalog_written_once_and_refreshed_by_metadata(
    master,
    store: GCSStore,  # type: ignore[no-untyped-def]
    model_factory,
) -> None:
    _proc, api = master
    publish(store, model_factory(2.0), "demo")
    info = wait_for(lambda: store.stat(catalog_object("models")), 30, "catalog written")
    catalog = parse_catalog(store.read(catalog_object("models")))
    wait_for(
        lambda: (
            parse_catalog(store.read(catalog_object("models"))).complete_versions("demo") == [1]
        ),
        30,
        "v1 in the catalog",
    )
    info = store.stat(catalog_object("models"))
    assert info is not None
    stamp = float(info.metadata[LISTED_AT])  # type: ignore[index]
    wait_for(
        lambda: (
            float(store.stat(catalog_object("models")).metadata[LISTED_AT])  # type: ignore[union-attr,index]
            > stamp
        ),
        30,
        "listed_at refreshed",
    )
    again = store.stat(catalog_object("models"))
    assert again is not None and again.generation == info.generation  # body not rewritten
    assert float(again.metadata[LISTED_AT]) > stamp  # type: ignore[index]
    publish(store, model_factory(3.0), "demo")
    wait_for(
        lambda: (
            parse_catalog(store.read(catalog_object("models"))).complete_versions("demo") == [1, 2]
        ),
        30,
        "v2 in the catalog",
    )
    assert catalog is not None
    status, doc = api.call("GET", "/v1/models", ADMIN)
    (demo,) = [m for m in doc["models"] if m["model"] == "demo"]
    assert status == 200 and demo["versions_in_bucket"] == [1, 2]
    assert demo["target_versions"] == [2] and demo["converged"] is False  # no nodes yet


@pytest.mark.timeout(480)  # its waits add up to 300 s
def test_nodes_register_go_stale_and_come_back_and_follow_the_api(
    master,
    store: GCSStore,
    store_settings: StoreSettings,
    model_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    proc, api = master
    for a in (2.0, 3.0, 4.0):
        publish(store, model_factory(a), "demo")
    node = Node(
        tmp_path / "node",
        bucket=store_settings.bucket,
        emulator_host=store_settings.emulator_host or "",
        name="node-1",
        poll_s=0.5,
        master_url=proc.url,
        node_secret=NODE,
        extra_env={"MODELSYNC_HEARTBEAT_S": "0.5"},
    ).start()
    try:

        def roles() -> dict[str, str]:
            nodes = api.call("GET", "/v1/nodes", READ)[1]["nodes"]
            return {
                role: r["state"]
                for n in nodes
                if n["node_id"] == "node-1"
                for role, r in n["roles"].items()
            }

        wait_for(
            lambda: roles() == {"puller": "live", "config_manager": "live"},
            30,
            "both daemons registered",
        )

        def cluster() -> dict[str, Any]:
            return api.call("GET", "/v1/cluster", READ)[1]["models"].get("demo", {})

        wait_for(
            lambda: cluster().get("converged") and cluster()["target_versions"] == [3],
            60,
            "v3 served everywhere",
        )
        status, doc = api.call("GET", "/v1/models/demo", READ)
        assert status == 200 and doc["versions"]["3"]["available"] == ["node-1"]

        # pin through the API: the policy object changes and the node follows
        status, doc = api.call("POST", "/v1/models/demo/pin", ADMIN, {"version": 1})
        assert status == 200 and doc["policy"]["pin"] == 1
        assert parse_policy(store.read(policy_object("models"))).for_model("demo").pin == 1
        wait_for(
            lambda: cluster().get("converged") and cluster()["target_versions"] == [1],
            60,
            "pinned v1 served",
        )
        # rollback from a pin at 2 pins 1; unpin serves the newest again
        assert api.call("POST", "/v1/models/demo/pin", ADMIN, {"version": 2})[0] == 200
        status, doc = api.call("POST", "/v1/models/demo/rollback", ADMIN)
        assert status == 200 and doc["policy"]["pin"] == 1
        status, doc = api.call("POST", "/v1/models/demo/rollback", ADMIN)
        assert status == 409 and "no complete version older" in doc["error"]
        assert api.call("DELETE", "/v1/models/demo/pin", ADMIN)[0] == 200
        # labels: canary on v2 while v3 is served; both served, label in TF Serving's config
        status, doc = api.call("PUT", "/v1/models/demo/labels/canary", ADMIN, {"version": 2})
        assert status == 200 and doc["policy"]["labels"] == {"canary": 2}
        wait_for(
            lambda: (
                cluster().get("converged")
                and cluster()["target_versions"] == [2, 3]
                and cluster()["labels"] == {"canary": 2}
            ),
            60,
            "labelled v2 served",
        )
        wait_for(
            lambda: 'key: "canary"' in (node.config_path.read_text()),
            30,
            "label in the TF Serving config",
        )
        # bad input
        assert api.call("POST", "/v1/models/demo/pin", ADMIN, {"version": 99})[0] == 422
        assert api.call("POST", "/v1/models/demo/pin", ADMIN, {"version": "x"})[0] == 400
        assert api.call("PUT", "/v1/models/demo/labels/1bad", ADMIN, {"version": 2})[0] == 400
        assert api.call("DELETE", "/v1/models/demo/labels/none", ADMIN)[0] == 409
        assert api.call("PUT", "/v1/models/demo/policy", ADMIN, {"keep_versions": 0})[0] == 400
        assert api.call("GET", "/v1/models/bad%20name", READ)[0] == 400
        # every write is in the audit log
        status, doc = api.call("GET", "/v1/events?kind=audit&model=demo&limit=50", READ)
        assert {e["event"] for e in doc["events"]} >= {
            "model_pinned",
            "model_rolled_back",
            "model_unpinned",
            "label_set",
        }
        # node events arrived with the heartbeats
        status, doc = api.call("GET", "/v1/events?node=node-1&limit=200", READ)
        assert any(e["event"] == "version_installed" for e in doc["events"])
        # the real daemons' reports pass the master's checks whole (nothing dropped)
        assert not [e for e in doc["events"] if e["event"] == "report_dropped"], doc["events"]

        # the daemons stop: stale after 3 missed beats; back when they return
        assert node.puller is not None
        node.puller.stop()
        wait_for(lambda: roles().get("puller") == "stale", 20, "puller stale")
        assert roles()["config_manager"] == "live"
        node.puller = node._daemon("puller", node.puller_port)
        wait_for(lambda: roles().get("puller") == "live", 20, "puller live again")

        # POST /v1/sync reaches the nodes at their next beat
        status, doc = api.call("POST", "/v1/sync", ADMIN)
        assert status == 200
        wait_for(
            lambda: "sync_requested_by_master" in node.puller.log_path.read_text(),
            20,
            "sync delivered",
        )
    finally:
        node.stop()


def test_concurrent_writes_lose_nothing(master, store: GCSStore, model_factory) -> None:  # type: ignore[no-untyped-def]
    _proc, api = master
    for a in (2.0, 3.0):
        publish(store, model_factory(a), "demo")
    results: list[tuple[str, int]] = []

    def put(label: str) -> None:
        results.append(
            (label, api.call("PUT", f"/v1/models/demo/labels/{label}", ADMIN, {"version": 1})[0])
        )

    threads = [threading.Thread(target=put, args=(f"l{i}",)) for i in range(8)]
    threads += [
        threading.Thread(
            target=lambda v=v: results.append(
                (f"pin{v}", api.call("POST", "/v1/models/demo/pin", ADMIN, {"version": v})[0])
            )
        )
        for v in (1, 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(code in (200, 409) for _, code in results), results
    policy = parse_policy(store.read(policy_object("models"))).for_model("demo")
    for label, code in results:
        if label.startswith("l") and code == 200:
            assert policy.labels.get(label) == 1, (label, policy)  # no lost write
    pins = [int(k[3:]) for k, code in results if k.startswith("pin") and code == 200]
    assert policy.pin in pins  # one winner among the pins that succeeded


def test_restart_loses_nothing(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    publish(store, model_factory(2.0), "demo")
    db = str(tmp_path / "state" / "master.sqlite3")
    spec = MasterSpec(
        bucket=store_settings.bucket,
        emulator_host=store_settings.emulator_host or "",
        admin_token=ADMIN,
        node_secret=NODE,
        read_token=READ,
        db_path=db,
    )
    proc = start_master(tmp_path, spec)
    api = Api(proc.url)  # type: ignore[attr-defined]
    try:
        beat = {
            "node_id": "n9",
            "role": "puller",
            "status": {"installed": {"demo": [1]}},
            "events": [{"event": "version_installed", "model": "demo", "version": 1}],
        }
        assert api.call("POST", "/v1/nodes/heartbeat", node_token(NODE, "n9"), beat)[0] == 200
        assert api.call("POST", "/v1/models/demo/pin", ADMIN, {"version": 1})[0] == 200
    finally:
        assert proc.stop() == 0
    proc = start_master(tmp_path, spec, name="master2")
    api = Api(proc.url)  # type: ignore[attr-defined]
    try:
        nodes = api.call("GET", "/v1/nodes", READ)[1]["nodes"]
        assert [(n["node_id"], list(n["roles"])) for n in nodes] == [("n9", ["puller"])]
        events = api.call("GET", "/v1/events?limit=100", READ)[1]["events"]
        assert {"node_registered", "version_installed", "model_pinned"} <= {
            e["event"] for e in events
        }
        assert api.call("GET", "/v1/models/demo", READ)[1]["policy"]["pin"] == 1
    finally:
        assert proc.stop() == 0


def test_heartbeat_validation(master) -> None:  # type: ignore[no-untyped-def]
    _proc, api = master
    for bad in [
        {"role": "puller"},
        {"node_id": "a b", "role": "puller"},
        {"node_id": "n", "role": "boss"},
        {"node_id": "n", "role": "puller", "events": "x"},
        {"node_id": "n", "role": "puller", "events": [{}] * 1001},
        [],
    ]:
        status, doc = api.call("POST", "/v1/nodes/heartbeat", node_token(NODE, "n"), bad)
        assert status == 400 and doc["error"], bad
    req = urllib.request.Request(
        api.url + "/v1/nodes/heartbeat",
        data=b"x" * (2 << 20),
        method="POST",
        headers={"Authorization": f"Bearer {N1}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 413


@pytest.mark.timeout(720)  # one schemathesis run of up to 600 s
@pytest.mark.parametrize(
    ("token", "selection"),
    [
        # the jobs' routes need a broker: tests/integration/test_jobs.py runs them with one
        (ADMIN, ["--exclude-path", "/v1/nodes/heartbeat", "--exclude-path-regex", "^/v1/jobs"]),
        (READ, ["--exclude-path", "/v1/nodes/heartbeat", "--exclude-path-regex", "^/v1/jobs"]),
        (N1, ["--include-path", "/v1/nodes/heartbeat"]),
    ],
    ids=["admin", "read", "node"],
)
def test_schemathesis_finds_no_server_errors(
    master,
    store: GCSStore,
    model_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    token: str,
    selection: list[str],
) -> None:
    import os
    import subprocess
    import sys

    _proc, api = master
    publish(store, model_factory(2.0), "demo")
    exe = Path(sys.executable).parent / "schemathesis"
    res = subprocess.run(
        [
            str(exe),
            "run",
            f"{api.url}/v1/openapi.json",
            "--checks",
            "not_a_server_error",
            "-H",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "25",
            "--request-timeout",
            "20",
            "--generation-deterministic",
            "--no-color",
            *selection,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "schemathesis_node_hooks" if token == N1 else "",
            "SCHEMATHESIS_NODE_ID": "n1",
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path]),
        },
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    m = re.search(r"(\d+) generated, (\d+) passed", res.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 50, res.stdout[-3000:]
