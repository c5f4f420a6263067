"""The master's Swarm view matches heartbeats to Swarm nodes by node id (stack.yml's daemons
beat as {{.Node.ID}}), so two hosts with one hostname are two nodes (a fake Docker client)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from master.db import NodeRow
from master.swarm import swarm_view

NOW = 1_000_000.0


class FakeNode:
    def __init__(self, node_id: str, hostname: str) -> None:
        self.id = node_id
        self.attrs = {
            "Description": {"Hostname": hostname},
            "Status": {"State": "ready"},
            "Spec": {"Availability": "active", "Labels": {"modelsync.serving": "true"}},
        }


class FakeService:
    def __init__(self, role: str, node_ids: list[str]) -> None:
        self.attrs = {"Spec": {"Labels": {"com.modelsync.role": role}}}
        self._tasks = [{"NodeID": n, "Status": {"State": "running"}} for n in node_ids]

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self._tasks


class FakeClient:
    """Two Swarm nodes that share the hostname "vm", each running every node service."""

    def __init__(self, **_: Any) -> None:
        nodes = [FakeNode("id-a", "vm"), FakeNode("id-b", "vm")]
        roles = ("tfserving", "puller", "config_manager")
        self.nodes = type("Nodes", (), {"list": lambda _self: nodes})()
        services = [FakeService(r, ["id-a", "id-b"]) for r in roles]
        self.services = type("Services", (), {"list": lambda _self, filters: services})()

    def info(self) -> dict[str, Any]:
        return {"Swarm": {"LocalNodeState": "active"}}

    def close(self) -> None:
        pass


def beat(node_id: str, role: str) -> NodeRow:
    return NodeRow(node_id, role, "vm", "0.1.0", 3.0, {}, NOW - 60, NOW - 1, 20)


def test_a_node_is_matched_by_its_id_not_by_a_shared_hostname(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker

    sock = tmp_path / "docker.sock"
    sock.touch()
    monkeypatch.setattr(docker, "DockerClient", FakeClient)
    # only id-a's daemons beat; id-b has the same hostname and is silent
    view = swarm_view([beat("id-a", "puller"), beat("id-a", "config_manager")], NOW, str(sock))
    assert view is not None and view["swarm"] is True
    assert {n["id"] for n in view["nodes"]} == {"id-a", "id-b"}
    flagged = {(p["node"], p["problem"]) for p in view["problems"]}
    assert flagged == {
        ("vm", "runs TF Serving; its puller sends no heartbeats"),
        ("vm", "runs TF Serving; its config_manager sends no heartbeats"),
    }
    assert len(view["problems"]) == 2  # for id-b only
    # daemons that beat under their hostname (MODELSYNC_NODE_ID unset) still match by name
    view = swarm_view([beat("vm", "puller"), beat("vm", "config_manager")], NOW, str(sock))
    assert view is not None and view["problems"] == []
