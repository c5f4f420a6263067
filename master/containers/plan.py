"""Container models as Swarm services (pure: no I/O, no docker).

``desired_services``: from the catalog's complete container versions, the policy (pins, labels,
``keep_versions``, rollouts, disabled) and each version's descriptor, the services the master
should run — one per model version, everywhere the fleet should have it:

- its name is ``service_name(model, version)`` (deterministic, within Swarm's 63 characters)
  and its labels say what it is (``com.modelsync.role=container``, the owning master's
  ``com.modelsync.owner``, model, version, host port, and ``com.modelsync.spec``, a hash of
  everything else, so a changed spec is an update);
- it runs on the serving nodes (``node.labels.modelsync.serving == true``), at most one task
  per node, ``replicas`` = the number of serving nodes, or 0 while an operator has the model
  stopped (the policy's ``disabled``: its versions stay, scaled to 0, and start again as they
  were);
- the container's port is published on the node (mode host) at a host port of the master's
  range; a version keeps its port for as long as its service exists;
- Swarm checks it with ``GET /ping`` (the healthcheck) and holds it to the descriptor's CPU and
  memory limits.

The versions of a model that run are the union of every node's fetch set (``policy.fetch_set``:
the served versions, plus the one a staged rollout is moving to; during a rollout the nodes
outside its stage keep the previous version); which of them a node's gateway answers with is
that node's served set (``node_routes``).

``diff_services``: what to create, update and remove so that Swarm runs exactly the desired
services. Services without the ``container`` role label are never touched.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from modelsync.catalog import Catalog
from modelsync.container import Descriptor
from modelsync.policy import Policy, fetch_set, served_set

ROLE_LABEL = "com.modelsync.role"
ROLE = "container"
MODEL_LABEL = "com.modelsync.model"
VERSION_LABEL = "com.modelsync.version"
PORT_LABEL = "com.modelsync.port"
# which master's: the name prefix (MODELSYNC_CONTAINER_PREFIX). A master lists, changes and
# removes only its own services, so two clusters (or test runs) can share one Swarm.
OWNER_LABEL = "com.modelsync.owner"
SPEC_LABEL = "com.modelsync.spec"
SERVING_CONSTRAINT = "node.labels.modelsync.serving == true"
OUTSIDE = "\x00"  # a node id no node has: a node outside a staged rollout's stage
MAX_SERVICE_NAME = 63
_UNSAFE = re.compile(r"[^A-Za-z0-9-]")
# Swarm's healthcheck runs inside the container: the contract asks for sh and one of these.
PING_CHECK = (
    'python3 -c "import sys,urllib.request as u; '
    "sys.exit(u.urlopen('http://127.0.0.1:{port}/ping', timeout=4).status != 200)\" "
    "2>/dev/null || curl -fsS -o /dev/null http://127.0.0.1:{port}/ping "
    "|| wget -q -O /dev/null http://127.0.0.1:{port}/ping"
)


@dataclass(frozen=True)
class ContainerSettings:
    """How the master runs container models (``MODELSYNC_CONTAINER_*``)."""

    port_base: int = 18000  # host ports: port_base .. port_base + port_count - 1
    port_count: int = 1000
    name_prefix: str = "modelsync"
    constraint: str = SERVING_CONSTRAINT
    health_interval_s: float = 5.0
    health_timeout_s: float = 5.0
    health_retries: int = 3
    health_start_s: float = 60.0
    ready_s: float = 300.0  # a version whose tasks do not all pass /ping by then is rolled back
    cooling_s: float = 120.0  # a removed service's host port is not handed out again before


@dataclass(frozen=True)
class ServiceSpec:
    """One model version's Swarm service, as the master wants it."""

    name: str
    model: str
    version: int
    image: str  # the descriptor's reference (pinned to its digest when known)
    container_port: int
    host_port: int
    replicas: int
    env: Mapping[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory_bytes: int | None = None
    constraints: tuple[str, ...] = (SERVING_CONSTRAINT,)
    healthcheck: tuple[str, ...] = ()  # the test, as Docker's CMD-SHELL form
    health_interval_s: float = 5.0
    health_timeout_s: float = 5.0
    health_retries: int = 3
    health_start_s: float = 60.0
    owner: str = "modelsync"  # the master's name prefix

    @property
    def spec_hash(self) -> str:
        """Everything but the replicas (a scale is not a new spec) and the labels it makes."""
        doc = {
            "image": self.image,
            "ports": [self.container_port, self.host_port],
            "env": sorted(self.env.items()),
            "cpus": self.cpus,
            "memory": self.memory_bytes,
            "constraints": list(self.constraints),
            "health": [
                list(self.healthcheck),
                self.health_interval_s,
                self.health_timeout_s,
                self.health_retries,
                self.health_start_s,
            ],
        }
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def labels(self) -> dict[str, str]:
        return {
            ROLE_LABEL: ROLE,
            OWNER_LABEL: self.owner,
            MODEL_LABEL: self.model,
            VERSION_LABEL: str(self.version),
            PORT_LABEL: str(self.host_port),
            SPEC_LABEL: self.spec_hash,
        }


@dataclass(frozen=True)
class ServiceState:
    """A container service as Swarm has it (from its labels, its replicas, and how many of
    its tasks run: with a healthcheck, Swarm counts a task running once ``/ping`` passed)."""

    name: str
    model: str
    version: int
    host_port: int
    spec_hash: str
    replicas: int
    running: int = 0

    @property
    def ready(self) -> bool:
        """Every task it should have runs."""
        return self.replicas > 0 and self.running >= self.replicas

    @classmethod
    def from_labels(
        cls, name: str, labels: Mapping[str, str], replicas: int, running: int = 0
    ) -> ServiceState | None:
        """None for a service whose labels are not ours or are damaged (left alone)."""
        try:
            return cls(
                name,
                labels[MODEL_LABEL],
                int(labels[VERSION_LABEL]),
                int(labels[PORT_LABEL]),
                labels[SPEC_LABEL],
                replicas,
                running,
            )
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class Create:
    spec: ServiceSpec


@dataclass(frozen=True)
class Update:
    spec: ServiceSpec
    reason: str  # "spec" (a new image, env, limits…) or "scale"


@dataclass(frozen=True)
class Remove:
    name: str
    model: str
    version: int


Op = Create | Update | Remove


@dataclass(frozen=True)
class ServicePlan:
    services: tuple[ServiceSpec, ...]
    problems: tuple[str, ...] = ()

    def by_key(self) -> dict[tuple[str, int], ServiceSpec]:
        return {(s.model, s.version): s for s in self.services}


def service_name(model: str, version: int, prefix: str = "modelsync") -> str:
    """``<prefix>-<model>-v<version>``; a model name with other characters than
    [A-Za-z0-9-], or too long, is shortened and made unique by a hash of it."""
    tail = f"-v{version}"
    safe = _UNSAFE.sub("-", model)
    name = f"{prefix}-{safe}{tail}"
    if safe == model and len(name) <= MAX_SERVICE_NAME:
        return name
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    room = MAX_SERVICE_NAME - len(prefix) - len(tail) - len(digest) - 2
    return f"{prefix}-{safe[:room]}-{digest}{tail}"


def container_versions(catalog: Catalog) -> dict[str, list[int]]:
    """Model -> its complete container versions (sorted)."""
    out: dict[str, list[int]] = {}
    for model, versions in catalog.models.items():
        done = sorted(v for v, cv in versions.items() if cv.complete and cv.kind == "container")
        if done:
            out[model] = done
    return out


def running_versions(model: str, complete: Iterable[int], policy: Policy) -> frozenset[int]:
    """The versions of a container model that run in the fleet (scaled to 0 while stopped)."""
    mp = policy.for_model(model)
    if mp.disabled:  # stopped: the versions it would run, kept at 0 replicas
        policy = policy.with_model(model, replace(mp, disabled=False))
    # every node's: the fleet's target, a node outside a staged rollout's stage, one inside it
    state = policy.rollout_in_force(model)
    nodes = (None, OUTSIDE, *(state.nodes[:1] if state is not None else ()))
    return frozenset().union(*(fetch_set(model, complete, policy, n) for n in nodes))


def held_versions(
    model: str, wanted: frozenset[int], policy: Policy, existing: Iterable[ServiceState]
) -> frozenset[int]:
    """Validation before traffic: while a version the policy wants is not ready everywhere
    (no service yet, or its tasks have not passed ``/ping``), the versions of the model that
    are ready keep running; they go once every wanted version is ready."""
    mine = {s.version: s for s in existing if s.model == model}
    if policy.for_model(model).disabled or all(v in mine and mine[v].ready for v in wanted):
        return frozenset()
    ready = frozenset(v for v, s in mine.items() if s.ready)
    if ready:
        return ready
    # none ready yet (a version replaced while it was still starting): keep the newest that
    # runs, so a broken successor never leaves the model with nothing to fall back on
    starting = [v for v, s in mine.items() if s.replicas > 0 and v not in wanted]
    return frozenset(sorted(starting)[-1:])


def to_roll_back(
    existing: Iterable[ServiceState],
    unready_since: Mapping[tuple[str, int], float],
    now: float,
    ready_s: float,
) -> list[tuple[str, int]]:
    """Versions whose tasks have not all passed ``/ping`` for ``ready_s`` while another version
    of the model is ready to fall back on (its service held by ``held_versions``)."""
    existing = list(existing)
    fallback = {s.model for s in existing if s.ready}
    return sorted(
        (s.model, s.version)
        for s in existing
        if s.replicas > 0
        and not s.ready
        and s.model in fallback
        and now - unready_since.get((s.model, s.version), now) >= ready_s
    )


def _spec(
    model: str,
    version: int,
    descriptor: Descriptor,
    host_port: int,
    replicas: int,
    settings: ContainerSettings,
) -> ServiceSpec:
    return ServiceSpec(
        name=service_name(model, version, settings.name_prefix),
        model=model,
        version=version,
        image=descriptor.reference,
        container_port=descriptor.port,
        host_port=host_port,
        replicas=replicas,
        env=dict(descriptor.env),
        cpus=descriptor.resources.cpus,
        memory_bytes=descriptor.resources.memory_bytes,
        constraints=(settings.constraint,),
        healthcheck=("CMD-SHELL", PING_CHECK.format(port=descriptor.port)),
        health_interval_s=settings.health_interval_s,
        health_timeout_s=settings.health_timeout_s,
        health_retries=settings.health_retries,
        health_start_s=settings.health_start_s,
        owner=settings.name_prefix,
    )


def desired_services(
    catalog: Catalog,
    policy: Policy,
    descriptors: Mapping[tuple[str, int], Descriptor | str],
    serving_nodes: int,
    existing: Iterable[ServiceState] = (),
    settings: ContainerSettings = ContainerSettings(),
    cooling: frozenset[int] = frozenset(),
) -> ServicePlan:
    """The services Swarm should run. ``descriptors``: (model, version) -> its descriptor, or
    why it could not be read (that version is left out, and said so). ``existing``: what Swarm
    runs now (a version keeps its host port). ``cooling``: host ports of services removed
    lately, not handed out yet (the old container may still answer there while it stops)."""
    existing = list(existing)
    held = {(s.model, s.version): s.host_port for s in existing}
    problems: list[str] = []
    wanted: list[tuple[str, int, Descriptor, int]] = []
    for model, versions in sorted(container_versions(catalog).items()):
        run = running_versions(model, versions, policy)
        run |= held_versions(model, run, policy, existing) & set(versions)  # still in the bucket
        replicas = 0 if policy.for_model(model).disabled else serving_nodes
        for version in sorted(run):
            descriptor = descriptors.get((model, version))
            if descriptor is None:
                descriptor = "its descriptor has not been read yet"
            if isinstance(descriptor, str):
                problems.append(f"{model}/{version}: not run: {descriptor}")
                continue
            wanted.append((model, version, descriptor, replicas))
    keys = {(m, v) for m, v, _, _ in wanted}
    taken = {port for key, port in held.items() if key in keys} | set(cooling)
    specs: list[ServiceSpec] = []
    for model, version, descriptor, replicas in wanted:
        port = held.get((model, version))
        if port is None:
            port = _free_port(model, version, taken, settings)
            if port is None:
                problems.append(
                    f"{model}/{version}: not run: no free host port in "
                    f"{settings.port_base}-{settings.port_base + settings.port_count - 1}"
                )
                continue
            taken.add(port)
        specs.append(_spec(model, version, descriptor, port, replicas, settings))
    return ServicePlan(tuple(specs), tuple(problems))


def _free_port(
    model: str, version: int, taken: set[int], settings: ContainerSettings
) -> int | None:
    """A free host port for a new service: from a place of the range that depends on the model
    and version (then the next free one), so a freed port is seldom handed straight on."""
    start = zlib.crc32(f"{model}/{version}".encode()) % settings.port_count
    for i in range(settings.port_count):
        port = settings.port_base + (start + i) % settings.port_count
        if port not in taken:
            return port
    return None


def diff_services(plan: ServicePlan, existing: Iterable[ServiceState]) -> list[Op]:
    """Creates, updates and removals that turn ``existing`` into ``plan`` (removals first, so
    a freed host port is free before it is reused; then by service name)."""
    have = {(s.model, s.version): s for s in existing}
    ops: list[Op] = []
    want = plan.by_key()
    for key, state in sorted(have.items()):
        spec = want.get(key)
        if spec is None or spec.name != state.name:
            ops.append(Remove(state.name, state.model, state.version))
    for key, spec in sorted(want.items()):
        current = have.get(key)
        if current is None or current.name != spec.name:
            ops.append(Create(spec))
        elif current.spec_hash != spec.spec_hash or current.host_port != spec.host_port:
            ops.append(Update(spec, "spec"))
        elif current.replicas != spec.replicas:
            ops.append(Update(spec, "scale"))
    return ops


def node_routes(
    running: Mapping[tuple[str, int], int], catalog: Catalog, policy: Policy, node_id: str | None
) -> dict[str, dict[str, object]]:
    """Model -> ``{"versions": {"<v>": host port}, "latest": v, "labels": {…}}`` for a node's
    gateway (its heartbeat answer): every version of the model that runs (``running``:
    (model, version) -> host port, services with replicas), and as ``latest`` the newest the
    node serves (its served set, under a staged rollout) that runs. The gateway sends a request
    without a version to the newest ready version up to ``latest``: a version held while its
    successor is not ready yet (``held_versions``) answers meanwhile. A stopped model has none."""
    out: dict[str, dict[str, object]] = {}
    for model, versions in container_versions(catalog).items():
        served = served_set(model, versions, policy, node_id)
        routed = {v: p for (m, v), p in sorted(running.items()) if m == model}
        if not routed or policy.for_model(model).disabled:
            continue
        latest = max((v for v in served.versions if v in routed), default=max(routed))
        out[model] = {
            "versions": {str(v): p for v, p in routed.items()},
            "latest": latest,
            "labels": {k: v for k, v in served.labels.items() if v in routed},
        }
    return out
