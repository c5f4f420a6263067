"""The Swarm view (docker SDK, only with /var/run/docker.sock): Swarm nodes, the tasks of the
modelsync services, and nodes that run TF Serving without a live puller or config manager.

Services are recognised by the label ``com.modelsync.role`` (tfserving, puller,
config_manager, master) that stack.yml sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from master.db import NodeRow


def swarm_view(registry: Iterable[NodeRow], now: float, socket: str) -> dict[str, Any] | None:
    """``socket``: the Docker Engine's unix socket (``MODELSYNC_DOCKER_SOCKET``)."""
    if not os.path.exists(socket):
        return None
    import docker

    client = docker.DockerClient(base_url="unix://" + socket, timeout=5)
    try:
        info = client.info()
        if info.get("Swarm", {}).get("LocalNodeState") != "active":
            return {"swarm": False}
        nodes = {
            n.id: {
                "id": n.id,
                "hostname": n.attrs["Description"]["Hostname"],
                "state": n.attrs["Status"]["State"],
                "availability": n.attrs["Spec"].get("Availability"),
                "labels": n.attrs["Spec"].get("Labels") or {},
                "tasks": {},
            }
            for n in client.nodes.list()
        }
        for service in client.services.list(filters={"label": "com.modelsync.role"}):
            role = service.attrs["Spec"]["Labels"]["com.modelsync.role"]
            for task in service.tasks(filters={"desired-state": "running"}):
                node_id = task.get("NodeID")
                if node_id in nodes:
                    st = task.get("Status", {}).get("State")
                    nodes[node_id]["tasks"].setdefault(role, []).append(st)
        # stack.yml's daemons beat under their Swarm node's id ({{.Node.ID}}: unique, where
        # hostnames may repeat); a daemon started with its hostname as id is matched by name
        live = {(r.node_id, r.role) for r in registry if r.state(now) == "live"}
        problems = []
        for n in nodes.values():
            running = {r for r, states in n["tasks"].items() if "running" in states}
            if "tfserving" in running:
                for role in ("puller", "config_manager"):
                    if role not in running:
                        problems.append(
                            {
                                "node": n["hostname"],
                                "problem": f"runs TF Serving without a running {role} task",
                            }
                        )
                    elif not live & {(n["id"], role), (n["hostname"], role)}:
                        problems.append(
                            {
                                "node": n["hostname"],
                                "problem": f"runs TF Serving; its {role} sends no heartbeats",
                            }
                        )
        return {"swarm": True, "nodes": list(nodes.values()), "problems": problems}
    finally:
        client.close()
