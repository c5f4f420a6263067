"""The master's container loop around the reconciler (a fake Swarm, the bucket in memory, the
master's SQLite): what it records for the API and the gateways, and crashed tasks as events."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fakes import FakeSwarm
from master_kit import master_settings

from master.containers.service import Containers
from master.db import Database
from modelsync.catalog import build_catalog
from modelsync.container import Descriptor, dump_descriptor
from modelsync.dev.memstore import MemoryStore
from modelsync.layout import DESCRIPTOR_NAME, SettleTracker, parse_listing
from modelsync.policy import Policy


def test_crashes_are_events_once_and_what_runs_is_recorded(tmp_path: Path) -> None:
    store, swarm = MemoryStore(), FakeSwarm(serving_nodes=2)
    store.write("models/churn/1/" + DESCRIPTOR_NAME, dump_descriptor(Descriptor("r.io/c:1")))
    store.write("models/churn/1/_READY", b"")
    listing = parse_listing(store.list_objects("models/"), "models", "_READY")
    catalog = build_catalog(listing, SettleTracker.markers_only(), time.time(), "models")
    settings = master_settings(tmp_path / "m.sqlite3")
    db = Database(settings.db_path)
    containers = Containers(settings, db, store, lambda: (catalog, Policy()), swarm=swarm)
    stop = threading.Event()
    stop.set()  # the loop's thread ends at once: this test calls tick() itself
    assert containers.start(stop) is True  # a Swarm given: no socket needed
    containers.tick()
    (service,) = containers.status()["services"]
    assert (service["service"], service["replicas"], service["running"]) == (
        "modelsync-churn-v1",
        2,
        2,
    )
    crash = {
        "id": "t1",
        "node": "n0",
        "state": "failed",
        "error": "task: non-zero exit (137)",
        "exit_code": 137,
    }
    swarm.ended["modelsync-churn-v1"] = [crash]
    containers.tick()
    containers.tick()
    failed = [e for e in db.events(limit=50) if e["event"] == "container_task_failed"]
    assert len(failed) == 1
    assert failed[0]["detail"]["exit_code"] == 137 and failed[0]["detail"]["version"] == 1
    assert containers.status()["services"][0]["failed"] == 1
    routes = containers.routes_for("n1", catalog, Policy())
    assert routes["churn"]["versions"] == {"1": service["host_port"]}


def test_an_engine_the_master_cannot_reach_is_an_error_of_each_pass_not_a_crash(
    tmp_path: Path,
) -> None:
    """A socket the master may not read (or an engine that is down): the master starts, each
    pass records why, and the pass after the engine answers would go on (a new connect)."""
    from master.containers.swarm import DockerSwarm, SwarmError

    socket = tmp_path / "no-engine.sock"  # nothing listens there
    socket.touch()
    swarm = DockerSwarm(str(socket), "modelsync")  # connects on first use, never here
    try:
        swarm.services()
    except SwarmError as exc:
        assert str(socket) in str(exc)
    else:
        raise AssertionError("no SwarmError")
    store = MemoryStore()
    store.write("models/churn/1/" + DESCRIPTOR_NAME, dump_descriptor(Descriptor("r.io/c:1")))
    store.write("models/churn/1/_READY", b"")
    listing = parse_listing(store.list_objects("models/"), "models", "_READY")
    catalog = build_catalog(listing, SettleTracker.markers_only(), time.time(), "models")
    settings = master_settings(tmp_path / "m.sqlite3")
    containers = Containers(
        settings, Database(settings.db_path), store, lambda: (catalog, Policy()), swarm=swarm
    )
    stop = threading.Event()
    stop.set()
    assert containers.start(stop) is True
    containers.tick()
    containers.tick()
    error = containers.status()["error"]
    assert error is not None and "Docker Engine" in error, containers.status()
