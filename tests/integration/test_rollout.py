"""Staged rollouts on real nodes: canary first, then the fleet; a bad version rolled back by
itself; the master killed mid-rollout freezes it (no node moves) and its restart resumes it;
two masters driving at once lose no write."""

from __future__ import annotations

import json
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
    def __init__(self, tmp: Path, settings: StoreSettings, n: int) -> None:
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
        {"canary_nodes": 1, "waves": [1.0], "bake_s": 8, "min_requests": 0},
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
    history = [h["status"] for h in fleet.rollout()["history"]]
    assert history[-3:] == ["baking", "validating", "complete"]


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
        {"canary_nodes": 1, "waves": [0.5, 1.0], "bake_s": 2, "min_requests": 0},
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
