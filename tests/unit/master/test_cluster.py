"""The cluster view (pure) over plain node rows."""

from __future__ import annotations

from master.cluster import all_models, model_view
from master.db import NodeRow
from modelsync.catalog import Catalog, CatalogVersion
from modelsync.policy import ModelPolicy, Policy

NOW = 1000.0


def row(node: str, role: str, status: dict, last_seen: float = NOW) -> NodeRow:
    return NodeRow(node, role, node, "0", 10.0, status, 0.0, last_seen, 1)


def catalog(*versions: int) -> Catalog:
    return Catalog(models={"m": {v: CatalogVersion(complete=True, bytes=10, objects=4,
                                                   fingerprint=f"f{v}") for v in versions}})


def test_converged_only_when_every_live_node_serves_the_targets() -> None:
    cat = catalog(1, 2)
    rows = [row("a", "config_manager", {"available": {"m": [2]}}),
            row("b", "config_manager", {"available": {"m": [1]}})]
    view = model_view("m", cat, Policy(), rows, NOW)
    assert view["target_versions"] == [2] and not view["converged"]
    assert view["versions"]["2"]["available"] == ["a"]
    rows[1] = row("b", "config_manager", {"available": {"m": [1]}}, last_seen=NOW - 100)
    view = model_view("m", cat, Policy(), rows, NOW)  # b is stale: not counted
    assert view["converged"] and view["serving_nodes"] == 1


def test_pin_and_bad_reports() -> None:
    cat = catalog(1, 2)
    policy = Policy(models={"m": ModelPolicy(pin=1)})
    rows = [row("a", "puller", {"installed": {"m": ["x", 1]}}),
            row("a", "config_manager", {"available": "garbage"})]
    view = model_view("m", cat, policy, rows, NOW)
    assert view["target_versions"] == [1] and view["versions"]["1"]["on_disk"] == ["a"]
    assert not view["converged"]
    assert all_models(cat, policy, rows) == ["m"]
