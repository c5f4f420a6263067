"""Staged rollouts on real nodes: canary first, then the fleet; a bad version rolled back by
itself; the master killed mid-rollout freezes it (no node moves) and its restart resumes it;
two masters driving at once lose no write; with labels set and client errors in the baseline on
every node, a good version judged per version and rolled out, a signature break rolled back."""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for, write_corrupt_version

from modelsync.client import PredictClient
from modelsync.dev.procs import MasterSpec, Node, start_master
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN, READ, NODE = "admin-token-0123456789", "read-token-0123456789", "node-token-0123456789"


def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Fleet:
    def __init__(self, tmp: Path, settings: StoreSettings, n: int, gateways: bool = False) -> None:
        self.tmp, self.settings = tmp, settings
        self.masters: list[Any] = []
        self.master = self.start_master("master", tmp / "master.sqlite3")
        self.nodes = [
            Node(
                tmp / f"n{i}",
                bucket=settings.bucket,
                emulator_host=settings.emulator_host or "",
                name=f"n{i}",
                poll_s=0.5,
                master_url=self.master.url,
                node_secret=NODE,
                extra_env={"MODELSYNC_HEARTBEAT_S": "0.5", "MODELSYNC_TELEMETRY_S": "1"},
                gateway=gateways,
            )
            for i in range(n)
        ]
        for node in self.nodes:
            node.start()
        self.clients = {n.name: PredictClient(f"127.0.0.1:{n.grpc_port}") for n in self.nodes}

    def start_master(self, name: str, db: Path, port: int = 0) -> Any:
        proc = start_master(
            self.tmp / name,
            MasterSpec(
                bucket=self.settings.bucket,
                port=port,
                emulator_host=self.settings.emulator_host or "",
                admin_token=ADMIN,
                node_secret=NODE,
                read_token=READ,
                catalog_s=0.5,
                db_path=str(db),
                extra_env={"MODELSYNC_ROLLOUT_S": "0.5"},
            ),
            name=name,
        )
        self.masters.append(proc)
        return proc

    def served(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for name, client in self.clients.items():
            try:
                out[name] = client.predict("demo", {"x": [1.0]}, timeout_s=5)[0]
            except Exception:
                out[name] = None
        return out

    def rollout(self, url: str | None = None) -> dict[str, Any]:
        return call(url or self.master.url, "GET", "/v1/models/demo/rollout")[1]

    def stop(self) -> None:
        for c in self.clients.values():
            c.close()
        for node in self.nodes:
            node.stop()
        for m in self.masters:
            m.stop()


@pytest.fixture
def fleet(store_settings: StoreSettings, tmp_path: Path):  # type: ignore[no-untyped-def]
    f = Fleet(tmp_path, store_settings, 3)
    yield f
    f.stop()


@pytest.fixture
def gateway_fleet(store_settings: StoreSettings, tmp_path: Path):  # type: ignore[no-untyped-def]
    f = Fleet(tmp_path, store_settings, 3, gateways=True)
    yield f
    f.stop()


def start_on_v1(fleet: Fleet, store: GCSStore, model_factory, spec: dict) -> None:  # type: ignore[no-untyped-def]
    publish(store, model_factory(2.0), "demo", PublishOptions(version=1))
    wait_for(lambda: set(fleet.served().values()) == {1}, 120, "v1 everywhere")
    code, doc = call(fleet.master.url, "PUT", "/v1/models/demo/rollout", spec)
    assert code == 200, doc
    wait_for(lambda: fleet.rollout()["status"] == "complete", 30, "v1 adopted as stable")


@pytest.mark.timeout(600)
def test_canary_then_fleet_and_a_master_outage_freezes_it(fleet, store, model_factory) -> None:  # type: ignore[no-untyped-def]
    start_on_v1(
        fleet,
        store,
        model_factory,
        # no traffic here: not judged, and promoted at the bake's end as this spec says
        {
            "canary_nodes": 1,
            "waves": [1.0],
            "bake_s": 8,
            "max_wait_s": 8,
            "on_insufficient": "promote",
        },
    )
    publish(store, model_factory(3.0), "demo", PublishOptions(version=2))
    r = wait_for(lambda: (r := fleet.rollout())["status"] == "baking" and r, 120, "canary")
    (canary,) = r["nodes_on_version"]
    served = fleet.served()
    assert served[canary] == 2 and all(v == 1 for n, v in served.items() if n != canary)
    # the master goes down while the canary bakes: nobody moves
    fleet.master.stop()
    frozen_since = r["stage_started_at"]
    wait_for(lambda: __import__("time").time() > frozen_since + 12, 30, "past the bake time")
    served = fleet.served()
    assert served[canary] == 2 and all(v == 1 for n, v in served.items() if n != canary)
    # back (same database, same bucket): it goes on from the policy's state
    fleet.master = fleet.start_master(
        "master-again", fleet.tmp / "master.sqlite3", port=fleet.master.port
    )
    wait_for(lambda: fleet.rollout()["status"] == "complete", 300, "rollout complete")
    wait_for(lambda: set(fleet.served().values()) == {2}, 60, "v2 everywhere")
    history = fleet.rollout()["history"]
    assert [h["status"] for h in history[-3:]] == ["baking", "validating", "complete"]
    assert "not judged after" in history[-2]["reason"] and "promoted" in history[-2]["reason"]


@pytest.mark.timeout(600)
def test_a_version_that_fails_on_the_canary_is_rolled_back_and_rejected(
    fleet, store, model_factory
) -> None:  # type: ignore[no-untyped-def]
    start_on_v1(
        fleet, store, model_factory, {"canary_nodes": 1, "waves": [0.5, 1.0], "bake_s": 300}
    )
    write_corrupt_version(store, model_factory(9.0), "demo", 2)  # fails on the canary
    r = wait_for(
        lambda: (r := fleet.rollout())["status"] == "rolled_back" and r,
        180,
        "rolled back by itself",
    )
    assert r["rejected"] == [2] and "failed on 1 node" in r["reason"]
    assert set(fleet.served().values()) == {1}  # nobody ever served it
    code, doc = call(fleet.master.url, "GET", "/v1/models/demo")
    assert code == 200 and doc["target_versions"] == [1]
    events = call(fleet.master.url, "GET", "/v1/events?kind=audit&model=demo")[1]["events"]
    assert any(e["event"] == "rollout_rolled_back" and e["detail"]["rejected"] == 2 for e in events)


@pytest.mark.timeout(600)
def test_two_masters_drive_one_rollout_without_losing_a_write(fleet, store, model_factory) -> None:  # type: ignore[no-untyped-def]
    start_on_v1(
        fleet,
        store,
        model_factory,
        {
            "canary_nodes": 1,
            "waves": [0.5, 1.0],
            "bake_s": 2,
            "max_wait_s": 2,
            "on_insufficient": "promote",
        },
    )
    second = fleet.start_master("master-b", fleet.tmp / "master-b.sqlite3")
    # the nodes beat to the first master only: the second sees no node and stays idle-safe
    publish(store, model_factory(3.0), "demo", PublishOptions(version=2))
    wait_for(lambda: fleet.rollout()["status"] in ("validating", "baking"), 60, "started")
    code, doc = call(second.url, "PUT", "/v1/models/demo/labels/stable", {"version": 1})
    assert code == 200, doc
    wait_for(lambda: fleet.rollout()["status"] == "complete", 180, "complete")
    policy = call(second.url, "GET", "/v1/models/demo")[1]["policy"]
    assert policy["labels"] == {"stable": 1}  # the operator's write survived the rollout's
    starts = [
        h for h in fleet.rollout()["history"] if h["status"] == "validating" and h["stage"] == 0
    ]
    assert len(starts) == 1  # started once, although two masters drive it


class Load:
    """Predict on every node until stopped (bounded in count and time): ``labelled`` of the
    requests name the label ``stable``, ``bad`` have a wrong input name (INVALID_ARGUMENT, the
    clients' mistake), the rest name only the model; and a few MLflow requests through each
    node's gateway."""

    def __init__(self, fleet: Fleet, rps: float, labelled: float, bad: float, limit_s: float):
        self.fleet, self.rps, self.labelled, self.bad = fleet, rps, labelled, bad
        self.deadline = time.monotonic() + limit_s
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [
            threading.Thread(target=self.run, args=(n,), daemon=True) for n in fleet.nodes
        ]
        for t in self.threads:
            t.start()

    def run(self, node: Node) -> None:
        client, rng = fleet_client(node), random.Random(node.name)
        for i in range(100_000):
            if self.stop.is_set() or time.monotonic() > self.deadline:
                break
            name = "nope" if rng.random() < self.bad else "x"
            label = "stable" if rng.random() < self.labelled else None
            with contextlib.suppress(Exception):  # wrong on purpose, or not served for a moment
                client.predict("demo", {name: [rng.random()]}, label=label, timeout_s=10)
            if i % 10 == 0 and node.gateway_url:
                invoke(node.gateway_url, rng.random())
            self.sent += 1
            self.stop.wait(1 / self.rps)
        client.close()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def fleet_client(node: Node) -> PredictClient:
    return PredictClient(f"127.0.0.1:{node.grpc_port}")


def invoke(gateway_url: str, x: float) -> None:
    req = urllib.request.Request(
        gateway_url + "/model/demo/invocations",
        data=json.dumps({"inputs": {"x": [x]}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
    except urllib.error.HTTPError:
        pass  # a failure is counted by the gateway as well


def audit(fleet: Fleet, event: str) -> list[dict[str, Any]]:
    events = call(fleet.master.url, "GET", "/v1/events?kind=audit&model=demo&limit=200")[1]
    return [e for e in events["events"] if e["event"] == event]


@pytest.mark.timeout(600)
def test_labels_and_client_errors_in_the_baseline_judged_per_version(
    gateway_fleet, store, model_factory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """The issue's everyday fleet: `stable` keeps v1 AVAILABLE beside the new version on every
    node, 8 % of every node's requests are the clients' mistakes. A good v2 is judged on its own
    requests against the previous version's and rolled out; v3, whose input was renamed,
    fails most name-only requests and is rolled back on client errors."""
    fleet = gateway_fleet
    from modelsync.dev.models import make_linear_model

    renamed = make_linear_model(tmp_path / "renamed", 4.0, 1.0, input_name="features")
    publish(store, model_factory(2.0), "demo", PublishOptions(version=1))
    wait_for(lambda: set(fleet.served().values()) == {1}, 120, "v1 everywhere")
    assert call(fleet.master.url, "PUT", "/v1/models/demo/labels/stable", {"version": 1})[0] == 200
    # 120 requests a side: the load's 8 % bad requests (drawn from a seeded sequence per node)
    # then fall on both sides (with 40, a window could hold none of the canary's)
    spec = {"canary_nodes": 1, "waves": [1.0], "bake_s": 8, "warmup_s": 2, "min_requests": 120}
    code, doc = call(
        fleet.master.url, "PUT", "/v1/models/demo/rollout", spec | {"max_p99_ratio": 2}
    )
    assert code == 200, doc
    wait_for(lambda: fleet.rollout()["status"] == "complete", 30, "v1 adopted as stable")
    load = Load(fleet, rps=12, labelled=0.3, bad=0.08, limit_s=400)
    try:
        publish(store, model_factory(3.0), "demo", PublishOptions(version=2))
        seen: set[str] = set()

        def complete() -> bool:
            r = fleet.rollout()
            seen.add(r["status"])
            assert r["status"] != "rolled_back", r["reason"]
            return r["status"] == "complete" and r["version"] == 2

        wait_for(complete, 240, "v2 rolled out")
        assert "baking" in seen
        (advanced,) = [e for e in audit(fleet, "rollout_advanced") if e["detail"]["version"] == 2]
        j = advanced["detail"]["judgement"]
        assert j["verdict"] == "healthy" and j["source"] == "versions", j
        assert j["requests"]["new"] >= 120 and j["requests"]["baseline"] >= 120, j
        assert j["new"]["client_errors"] > 0 and j["baseline"]["client_errors"] > 0, j
        assert 0 < j["other_share"] < 1  # the canary also served the label's v1
        assert "judged on versions: v2 " in advanced["detail"]["reason"]
        # the gateways' per-version figures reached the master too
        db = sqlite3.connect(fleet.tmp / "master.sqlite3")
        rows = db.execute(
            "SELECT t.figures FROM telemetry_node t JOIN series s ON s.id = t.series "
            "WHERE s.model='demo' AND s.source='gateway'"
        ).fetchall()
        db.close()
        by_version = [json.loads(text).get("by_version", {}) for (text,) in rows]
        assert any("2" in per for per in by_version), by_version[-3:]

        # a signature break: most name-only requests now fail as the client's mistake
        publish(store, renamed, "demo", PublishOptions(version=3))
        r = wait_for(
            lambda: (r := fleet.rollout())["status"] == "rolled_back" and r, 240, "v3 rolled back"
        )
        assert r["version"] == 3 and r["rejected"] == [3]
        assert r["reason"].startswith("client errors"), r["reason"]
        assert "[versions: v3 " in r["reason"]
        wait_for(lambda: set(fleet.served().values()) == {2}, 60, "back on v2 everywhere")
    finally:
        load.close()
    assert load.sent > 0
