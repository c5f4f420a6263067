"""The container reconciler's pass (a fake Swarm behind ``SwarmServices``, the bucket in memory):
what it asks Swarm to do, what it says, and that one failure holds up nothing else."""

from __future__ import annotations

import time

from fakes import FakeSwarm

from master.containers.reconciler import ContainerReconciler
from modelsync.catalog import Catalog, build_catalog
from modelsync.container import Descriptor, dump_descriptor
from modelsync.dev.memstore import MemoryStore
from modelsync.layout import DESCRIPTOR_NAME, SettleTracker, parse_listing
from modelsync.policy import ModelPolicy, Policy
from modelsync.settings import StoreSettings


def publish(store: MemoryStore, model: str, version: int, body: bytes | None = None) -> None:
    base = f"models/{model}/{version}/"
    desc = Descriptor(f"127.0.0.1:5000/{model}:{version}")
    store.write(base + DESCRIPTOR_NAME, body if body is not None else dump_descriptor(desc))
    store.write(base + "_READY", b"")


def catalog(store: MemoryStore) -> Catalog:
    listing = parse_listing(store.list_objects("models/"), "models", "_READY")
    return build_catalog(listing, SettleTracker.markers_only(), time.time(), "models")


def reconciler(store: MemoryStore, swarm: FakeSwarm, events: list[tuple[str, str, dict]]):  # type: ignore[no-untyped-def]
    return ContainerReconciler(
        store, StoreSettings(bucket="b"), swarm, on_event=lambda e, m, d: events.append((e, m, d))
    )


def test_a_pass_creates_scales_and_removes_and_says_so() -> None:
    store, swarm, events = MemoryStore(), FakeSwarm(serving_nodes=2), []
    rec = reconciler(store, swarm, events)
    publish(store, "churn", 1)
    publish(store, "churn", 2)
    result = rec.tick(catalog(store), Policy(default_keep_versions=2))
    assert result.applied == ["create modelsync-churn-v1", "create modelsync-churn-v2"]
    assert {s.replicas for s in swarm.specs.values()} == {2}
    assert [e[0] for e in events] == ["container_service_created"] * 2
    assert events[0][2]["image"] == "127.0.0.1:5000/churn:1"
    assert events[0][2]["host_port"] == swarm.specs["modelsync-churn-v1"].host_port
    # the same again: nothing to do
    assert rec.tick(catalog(store), Policy(default_keep_versions=2)).applied == []
    # stopped: scaled to 0; keep_versions 1: v1 goes
    stopped = Policy(models={"churn": ModelPolicy(disabled=True)})
    assert rec.tick(catalog(store), stopped).applied == [
        "remove modelsync-churn-v1",
        "update modelsync-churn-v2",
    ]
    assert swarm.specs["modelsync-churn-v2"].replicas == 0
    assert "scale modelsync-churn-v2 0" in swarm.calls
    assert rec.tick(catalog(store), Policy()).applied == ["update modelsync-churn-v2"]
    assert swarm.specs["modelsync-churn-v2"].replicas == 2


def test_one_failure_holds_up_nothing_else_and_is_retried() -> None:
    store, swarm, events = MemoryStore(), FakeSwarm(), []
    rec = reconciler(store, swarm, events)
    publish(store, "a", 1)
    publish(store, "b", 1)
    swarm.refuse = {"modelsync-a-v1"}
    result = rec.tick(catalog(store), Policy())
    assert result.applied == ["create modelsync-b-v1"]
    assert result.failed == ["create modelsync-a-v1: create modelsync-a-v1: image not found"]
    assert ("container_service_failed", "a") in [(e, m) for e, m, _ in events]
    swarm.refuse = set()
    assert rec.tick(catalog(store), Policy()).applied == ["create modelsync-a-v1"]
    assert set(swarm.specs) == {"modelsync-a-v1", "modelsync-b-v1"}


def test_a_bad_descriptor_is_said_once_and_read_once_per_content() -> None:
    store, swarm, events = MemoryStore(), FakeSwarm(), []
    rec = reconciler(store, swarm, events)
    publish(store, "churn", 1, b'{"schema": 1, "image": "NoTag"}')
    for _ in range(3):
        result = rec.tick(catalog(store), Policy())
    assert swarm.specs == {}
    assert len(result.problems) == 1 and "image:" in result.problems[0]
    assert [e[0] for e in events] == ["container_version_not_run"]
    reads = store.calls.get("read", 0)
    rec.tick(catalog(store), Policy())
    assert store.calls.get("read", 0) == reads  # cached by the version's content
    publish(store, "churn", 1)  # fixed in place: a new content, read again, run
    assert rec.tick(catalog(store), Policy()).applied == ["create modelsync-churn-v1"]


def test_a_version_that_never_turns_ready_is_rolled_back_and_the_old_one_kept() -> None:
    store, swarm, events = MemoryStore(), FakeSwarm(), []
    now = [0.0]
    rejected: list[tuple[str, int, str]] = []
    rec = ContainerReconciler(
        store,
        StoreSettings(bucket="b"),
        swarm,
        on_event=lambda e, m, d: events.append((e, m, d)),
        on_reject=lambda m, v, why: rejected.append((m, v, why)),
        clock=lambda: now[0],
    )
    publish(store, "churn", 1)
    rec.tick(catalog(store), Policy())
    publish(store, "churn", 2)
    swarm.unready = {"modelsync-churn-v2"}
    for t in (1.0, 100.0, 299.0):
        now[0] = t
        rec.tick(catalog(store), Policy())
        assert set(swarm.specs) == {"modelsync-churn-v1", "modelsync-churn-v2"}  # v1 held
    assert rejected == []
    now[0] = 302.0
    result = rec.tick(catalog(store), Policy())
    assert result.rolled_back == [("churn", 2)]
    assert rejected == [("churn", 2, "its tasks did not pass GET /ping within 300 s")]
    # the master writes the rejection into the policy: the next pass removes v2, keeps v1
    after = Policy(models={"churn": ModelPolicy(rejected=frozenset({2}))})
    assert rec.tick(catalog(store), after).applied == ["remove modelsync-churn-v2"]
    assert set(swarm.specs) == {"modelsync-churn-v1"}


def test_a_removed_services_port_cools_before_it_is_handed_out_again() -> None:
    from master.containers.plan import ContainerSettings

    store, swarm, now = MemoryStore(), FakeSwarm(), [0.0]
    rec = ContainerReconciler(
        store,
        StoreSettings(bucket="b"),
        swarm,
        ContainerSettings(port_base=20000, port_count=2, cooling_s=60),
        clock=lambda: now[0],
    )
    publish(store, "a", 1)
    rec.tick(catalog(store), Policy())
    port = swarm.specs["modelsync-a-v1"].host_port
    gone = Policy(models={"a": ModelPolicy(rejected=frozenset({1}))})
    assert rec.tick(catalog(store), gone).applied == ["remove modelsync-a-v1"]
    publish(store, "b", 1)
    publish(store, "c", 1)
    now[0] = 30.0
    result = rec.tick(catalog(store), gone)
    assert [s.host_port for s in swarm.specs.values()] == [port ^ 1]  # the other port
    assert len(result.problems) == 1 and "no free host port" in result.problems[0]
    now[0] = 61.0  # cooled: handed out again
    rec.tick(catalog(store), gone)
    assert sorted(s.host_port for s in swarm.specs.values()) == [20000, 20001]
