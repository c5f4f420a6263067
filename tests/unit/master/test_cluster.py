"""The cluster view (pure) over plain node rows."""

from __future__ import annotations

from master.cluster import all_models, model_view, node_counts
from master.db import NodeRow
from master.index import FleetIndex
from modelsync.catalog import Catalog, CatalogVersion
from modelsync.policy import ModelPolicy, Policy

NOW = 1000.0


def row(node: str, role: str, status: dict, last_seen: float = NOW) -> NodeRow:
    return NodeRow(node, role, node, "0", 10.0, status, 0.0, last_seen, 1)


class Registry:
    """The two reads FleetIndex makes of the registry, over plain rows."""

    def __init__(self, rows: list[NodeRow]) -> None:
        self.rows = [NodeRow(*r.__dict__.values()) for r in rows]
        for i, r in enumerate(self.rows, start=1):
            object.__setattr__(r, "seq", i)

    def liveness(self):  # type: ignore[no-untyped-def]
        return [(r.node_id, r.role, r.last_seen, r.heartbeat_s, r.seq) for r in self.rows]

    def nodes_changed_since(self, seq: int) -> list[NodeRow]:
        return [r for r in self.rows if r.seq > seq]


def fleet(rows: list[NodeRow]):  # type: ignore[no-untyped-def]
    index = FleetIndex()
    with index.fleet(Registry(rows), NOW) as f:  # type: ignore[arg-type]
        return f


def catalog(*versions: int) -> Catalog:
    return Catalog(
        models={
            "m": {
                v: CatalogVersion(complete=True, bytes=10, objects=4, fingerprint=f"f{v}")
                for v in versions
            }
        }
    )


def test_converged_only_when_every_live_node_serves_the_targets() -> None:
    cat = catalog(1, 2)
    rows = [
        row("a", "config_manager", {"available": {"m": [2]}}),
        row("b", "config_manager", {"available": {"m": [1]}}),
    ]
    view = model_view("m", cat, Policy(), fleet(rows))
    assert view["target_versions"] == [2] and not view["converged"]
    assert view["versions"]["2"]["available"] == ["a"]
    rows[1] = row("b", "config_manager", {"available": {"m": [1]}}, last_seen=NOW - 100)
    view = model_view("m", cat, Policy(), fleet(rows))  # b is stale: not counted
    assert view["converged"] and view["serving_nodes"] == 1
    assert view["converged_since"] is None  # a did not say since when
    assert node_counts(fleet(rows)) == {"total": 2, "live": 1, "degraded": 0, "stale": 1}


def test_pin_and_bad_reports() -> None:
    cat = catalog(1, 2)
    policy = Policy(models={"m": ModelPolicy(pin=1)})
    rows = [
        row("a", "puller", {"installed": {"m": ["x", 1]}}),
        row("a", "config_manager", {"available": "garbage"}),
    ]
    view = model_view("m", cat, policy, fleet(rows))
    assert view["target_versions"] == [1] and view["versions"]["1"]["on_disk"] == ["a"]
    assert not view["converged"]
    assert all_models(cat, policy, fleet(rows)) == ["m"]


def test_index_follows_changed_and_forgotten_reports() -> None:
    rows = [
        row("a", "config_manager", {"available": {"m": [1]}, "failed": {"m": {"2": "bad pb"}}}),
        row("a", "puller", {"installed": {"m": [1, 2]}}),
        row("b", "puller", {"installed": {"x": [5]}}, last_seen=NOW - 100),
    ]
    registry = Registry(rows)
    index = FleetIndex()
    with index.fleet(registry, NOW) as f:  # type: ignore[arg-type]
        assert f.available == {"m": {1: {"a"}}} and f.on_disk["m"] == {1: {"a"}, 2: {"a"}}
        assert f.failed == {"m": {2: {"a": "bad pb"}}} and f.models == {"m", "x"}
        assert f.node_state("a") == "live" and f.node_state("b") == "stale"
    changed = NodeRow(
        "a", "config_manager", "a", "0", 10.0, {"available": {"m": [2]}}, 0.0, NOW, 2, 10
    )
    registry.rows = [changed, registry.rows[1]]  # a's report changed; b was forgotten
    with index.fleet(registry, NOW) as f:  # type: ignore[arg-type]
        assert f.available == {"m": {2: {"a"}}} and f.failed == {}
        assert f.models == {"m"} and "x" not in f.on_disk and set(f.roles) == {"a"}
