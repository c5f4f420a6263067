"""Container models' services on Swarm through the Docker SDK (the manager's socket,
``MODELSYNC_DOCKER_SOCKET``): the I/O shell of ``master.containers.plan``.

``SwarmServices`` is what the reconciler needs; ``DockerSwarm`` is the real one. Docker's
errors become ``SwarmError`` (one line), so one failed service never stops the others.
"""

from __future__ import annotations

from typing import Any, Protocol

from master.containers.plan import OWNER_LABEL, ROLE, ROLE_LABEL, ServiceSpec, ServiceState

NS = 1_000_000_000
SERVING_LABEL = "modelsync.serving"


class SwarmError(Exception):
    """The Docker Engine refused or failed a call; the message says which and why."""


class SwarmServices(Protocol):
    def services(self) -> list[ServiceState]: ...
    def serving_nodes(self) -> int: ...
    def create(self, spec: ServiceSpec) -> None: ...
    def update(self, spec: ServiceSpec) -> None: ...
    def scale(self, name: str, replicas: int) -> None: ...
    def remove(self, name: str) -> None: ...
    def tasks(self, name: str) -> list[dict[str, Any]]: ...


def _healthcheck(spec: ServiceSpec, healthcheck: Any) -> Any:
    check = healthcheck(
        test=list(spec.healthcheck),
        interval=int(spec.health_interval_s * NS),
        timeout=int(spec.health_timeout_s * NS),
        retries=spec.health_retries,
        start_period=int(spec.health_start_s * NS),
    )
    # during the start period, check every second (Engine API 1.44+; older engines ignore it):
    # a model is ready — and its predecessor free to go — as soon as it answers /ping
    check["StartInterval"] = NS
    return check


def _service_kwargs(spec: ServiceSpec) -> dict[str, Any]:
    from docker.types import (
        EndpointSpec,
        Healthcheck,
        Resources,
        RestartPolicy,
        ServiceMode,
        UpdateConfig,
    )

    return {
        "image": spec.image,
        "name": spec.name,
        "labels": spec.labels,
        "container_labels": {ROLE_LABEL: ROLE},
        "env": [f"{k}={v}" for k, v in sorted(spec.env.items())],
        "mode": ServiceMode("replicated", replicas=spec.replicas),
        "constraints": list(spec.constraints),
        "maxreplicas": 1,  # one task per node: every node's gateway has its own
        "endpoint_spec": EndpointSpec(ports={spec.host_port: (spec.container_port, "tcp", "host")}),
        "healthcheck": _healthcheck(spec, Healthcheck),
        "resources": Resources(
            cpu_limit=None if spec.cpus is None else int(spec.cpus * NS),
            mem_limit=spec.memory_bytes,
        ),
        "restart_policy": RestartPolicy(condition="any", delay=2 * NS),
        # the host port is the old task's until it stops: stop first, roll back a failure
        "update_config": UpdateConfig(
            parallelism=1, order="stop-first", failure_action="rollback", monitor=15 * NS
        ),
        "stop_grace_period": 10 * NS,
    }


class DockerSwarm:
    """``owner``: the master's name prefix; only services labelled with it are listed."""

    def __init__(self, socket: str, owner: str, timeout_s: float = 30.0) -> None:
        self.owner = owner
        self.socket = socket
        self.timeout_s = timeout_s
        self._connected: Any = None

    @property
    def _client(self) -> Any:
        """Connected on first use, and again after a failed connect: an engine that is down
        or a socket the master may not read (its group not given) is a SwarmError of each
        pass, shown by ``GET /v1/containers``, never a master that fails to start."""
        if self._connected is None:
            import docker
            from docker.errors import DockerException

            try:
                self._connected = docker.DockerClient(
                    base_url="unix://" + self.socket, timeout=int(self.timeout_s), version="auto"
                )
            except DockerException as exc:
                raise SwarmError(f"connect to the Docker Engine at {self.socket}: {exc}") from exc
        return self._connected

    def close(self) -> None:
        if self._connected is not None:
            self._connected.close()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from docker.errors import DockerException

        try:
            return fn(*args, **kwargs)
        except DockerException as exc:
            text = str(getattr(exc, "explanation", None) or exc).splitlines()[0]
            raise SwarmError(f"{what}: {text}") from exc

    def services(self) -> list[ServiceState]:
        found = self._call(
            "list services",
            self._client.services.list,
            filters={"label": [f"{ROLE_LABEL}={ROLE}", f"{OWNER_LABEL}={self.owner}"]},
        )
        out = []
        for service in found:
            spec = service.attrs["Spec"]
            replicas = spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 0)
            tasks = self._call(
                f"tasks of {spec['Name']}", service.tasks, filters={"desired-state": "running"}
            )
            running = sum(1 for t in tasks if t.get("Status", {}).get("State") == "running")
            labels = spec.get("Labels") or {}
            state = ServiceState.from_labels(spec["Name"], labels, replicas, running)
            if state is not None:
                out.append(state)
        return out

    def serving_nodes(self) -> int:
        nodes = self._call("list nodes", self._client.nodes.list)
        return sum(
            1
            for n in nodes
            if (n.attrs["Spec"].get("Labels") or {}).get(SERVING_LABEL) == "true"
            and n.attrs["Status"].get("State") == "ready"
            and n.attrs["Spec"].get("Availability") == "active"
        )

    def create(self, spec: ServiceSpec) -> None:
        self._call(f"create {spec.name}", self._client.services.create, **_service_kwargs(spec))

    def _get(self, name: str) -> Any:
        return self._call(f"find {name}", self._client.services.get, name)

    def update(self, spec: ServiceSpec) -> None:
        kwargs = _service_kwargs(spec)
        kwargs.pop("name")
        service = self._get(spec.name)
        self._call(f"update {spec.name}", service.update, **kwargs)

    def scale(self, name: str, replicas: int) -> None:
        service = self._get(name)
        self._call(f"scale {name}", service.scale, replicas)

    def remove(self, name: str) -> None:
        service = self._get(name)
        self._call(f"remove {name}", service.remove)

    def tasks(self, name: str) -> list[dict[str, Any]]:
        """The service's tasks, the ones that ended too (Swarm keeps a few): id, node, desired
        and current state, the error and the container's exit code."""
        service = self._get(name)
        tasks = self._call(f"tasks of {name}", service.tasks)
        return [
            {
                "id": t.get("ID"),
                "node": t.get("NodeID"),
                "desired": t.get("DesiredState"),
                "state": t.get("Status", {}).get("State"),
                "error": t.get("Status", {}).get("Err"),
                "exit_code": t.get("Status", {}).get("ContainerStatus", {}).get("ExitCode"),
                "since": t.get("Status", {}).get("Timestamp"),
            }
            for t in sorted(tasks, key=lambda t: t.get("Status", {}).get("Timestamp") or "")
        ]
