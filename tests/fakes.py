"""In-memory fakes behind the project's own Protocols, for unit tests of one daemon pass (the
bucket's fake is ``modelsync.dev.memstore.MemoryStore``).

``FakeServing``: a ``ServingClient`` that behaves like TF Serving's ModelService for the config
manager: a reload replaces the model list, versions load at once (or fail, when told to), an
old version is unloaded only once an aspired one is AVAILABLE (TF Serving's
availability-preserving policy), labels are accepted only onto AVAILABLE versions, and a restart
forgets everything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import text_format

from config_manager.serving import ModelUnknown, ServingUnavailable, VersionState
from modelsync.protos import serving_protos


class FakeServing:
    target = "fake:8500"

    def __init__(self, fail: set[tuple[str, int]] | None = None) -> None:
        self.models: dict[str, dict[int, VersionState]] = {}
        self.labels: dict[str, dict[str, int]] = {}
        self.fail = fail or set()
        self.stuck: set[tuple[str, int]] = set()  # stay LOADING (a load that never ends)
        self.on_status: Callable[[], None] | None = None  # runs at every status call
        self.up = True
        self.reloads: list[str] = []

    def model_status(self, model: str) -> list[VersionState]:
        if self.on_status is not None:
            self.on_status()
        if not self.up:
            raise ServingUnavailable(f"{self.target}: UNAVAILABLE")
        if not self.models.get(model):
            raise ModelUnknown(model)
        return list(self.models[model].values())

    def reload(self, config_text: str, timeout_s: float) -> tuple[int, str]:
        if not self.up:
            raise ServingUnavailable(f"{self.target}: UNAVAILABLE")
        self.reloads.append(config_text)
        cfg = serving_protos().ModelServerConfig()
        text_format.Parse(config_text, cfg)
        wanted = {
            c.name: (set(c.model_version_policy.specific.versions), dict(c.version_labels))
            for c in cfg.model_config_list.config
        }
        for name in set(self.models) - set(wanted):
            self.models[name] = {v: VersionState(v, "END") for v in self.models[name]}
        code, message = 0, ""
        for name, (versions, labels) in wanted.items():
            states = self.models.setdefault(name, {})
            for v in versions:
                if (name, v) in self.fail:
                    states[v] = VersionState(v, "END", 3, f"{name}/{v}: could not load")
                elif (name, v) in self.stuck:
                    states[v] = VersionState(v, "LOADING")
                elif v not in states or states[v].state != "AVAILABLE":
                    states[v] = VersionState(v, "AVAILABLE")
            serving = any(states[v].state == "AVAILABLE" for v in versions)
            for v, s in list(states.items()):  # availability-preserving: unload once a new
                if v not in versions and s.state != "END" and serving:  # version serves
                    states[v] = VersionState(v, "END")
            for label, v in labels.items():
                if states.get(v, VersionState(v, "UNKNOWN")).state != "AVAILABLE":
                    code, message = 9, f"label {label} onto {v}, which is not AVAILABLE"
            self.labels[name] = labels
        return code, message

    def restart(self) -> None:
        self.models, self.labels = {}, {}

    def close(self) -> None:
        pass


class FakeSwarm:
    """A ``master.containers.swarm.SwarmServices`` that keeps services as Swarm would (by name;
    a second create of a name, or a second service on a host port, is refused), with
    ``refuse`` naming services whose create or update fails and ``unready`` those whose tasks
    never pass ``/ping`` (every other task runs at once)."""

    def __init__(self, serving_nodes: int = 1) -> None:
        from master.containers.plan import ServiceSpec

        self.specs: dict[str, ServiceSpec] = {}
        self.nodes = serving_nodes
        self.refuse: set[str] = set()
        self.unready: set[str] = set()  # services whose tasks never pass /ping
        self.ended: dict[str, list[dict[str, Any]]] = {}  # name -> tasks that ended
        self.calls: list[str] = []

    def services(self) -> list[Any]:
        from master.containers.plan import ServiceState

        return [
            ServiceState(
                s.name,
                s.model,
                s.version,
                s.host_port,
                s.spec_hash,
                s.replicas,
                0 if s.name in self.unready else s.replicas,
            )
            for s in self.specs.values()
        ]

    def serving_nodes(self) -> int:
        return self.nodes

    def _check(self, spec: Any) -> None:
        from master.containers.swarm import SwarmError

        if spec.name in self.refuse:
            raise SwarmError(f"create {spec.name}: image not found")
        taken = {s.host_port for n, s in self.specs.items() if n != spec.name}
        if spec.host_port in taken:
            raise SwarmError(f"create {spec.name}: port {spec.host_port} is already in use")

    def create(self, spec: Any) -> None:
        from master.containers.swarm import SwarmError

        self.calls.append(f"create {spec.name}")
        if spec.name in self.specs:
            raise SwarmError(f"create {spec.name}: name conflicts with an existing object")
        self._check(spec)
        self.specs[spec.name] = spec

    def update(self, spec: Any) -> None:
        self.calls.append(f"update {spec.name}")
        self._check(spec)
        self.specs[spec.name] = spec

    def scale(self, name: str, replicas: int) -> None:
        from dataclasses import replace

        self.calls.append(f"scale {name} {replicas}")
        self.specs[name] = replace(self.specs[name], replicas=replicas)

    def remove(self, name: str) -> None:
        self.calls.append(f"remove {name}")
        del self.specs[name]

    def tasks(self, name: str) -> list[dict[str, Any]]:
        spec = self.specs[name]
        running = [
            {"id": f"{name}.{i}", "node": f"n{i}", "state": "running"} for i in range(spec.replicas)
        ]
        return [*self.ended.get(name, []), *running]
