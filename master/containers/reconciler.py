"""The master's container reconciler: one ``tick()`` makes Swarm run the services
``master.containers.plan`` wants, through a ``SwarmServices`` (the Docker SDK in production).

A tick reads the catalog and the policy the master already holds, the descriptors of the
container versions that should run (each read once per content: cached by fingerprint),
Swarm's services and its serving nodes; plans; applies the creates, updates and removals one
by one (a failed one is an event, the rest go on); and records what runs
(``running``: (model, version) -> host port, replicas) for the gateways' heartbeat answers.
Every change is an event (``container_service_created`` …), logged once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from master.containers.plan import (
    ContainerSettings,
    Create,
    Op,
    Remove,
    ServicePlan,
    ServiceState,
    Update,
    container_versions,
    desired_services,
    diff_services,
    running_versions,
    to_roll_back,
)
from master.containers.swarm import SwarmError, SwarmServices
from modelsync.catalog import Catalog
from modelsync.container import Descriptor, DescriptorError, parse_descriptor
from modelsync.layout import DESCRIPTOR_NAME, version_prefix
from modelsync.log import get_logger
from modelsync.policy import Policy
from modelsync.settings import StoreSettings
from modelsync.store import RemoteStore, StoreError

log = get_logger("master")
EventSink = Callable[[str, str, dict[str, object]], None]  # (event, model, detail)
RejectSink = Callable[[str, int, str], None]  # (model, version, why): reject it in the policy


@dataclass
class TickResult:
    applied: list[str] = field(default_factory=list)  # "create modelsync-churn-v3", …
    failed: list[str] = field(default_factory=list)
    problems: tuple[str, ...] = ()
    plan: ServicePlan | None = None
    rolled_back: list[tuple[str, int]] = field(default_factory=list)


class ContainerReconciler:
    def __init__(
        self,
        store: RemoteStore,
        store_settings: StoreSettings,
        swarm: SwarmServices,
        settings: ContainerSettings | None = None,
        on_event: EventSink | None = None,
        on_reject: RejectSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.store_settings = store_settings
        self.swarm = swarm
        self.settings = settings or ContainerSettings()
        self.on_event = on_event
        self.on_reject = on_reject
        self.clock = clock
        self._unready_since: dict[tuple[str, int], float] = {}
        self._freed: dict[int, float] = {}  # host port -> when its service was removed
        self._descriptors: dict[tuple[str, int], tuple[str, Descriptor | str]] = {}
        self._lock = threading.Lock()
        self._reported: set[str] = set()  # problems said once, until they go away
        self.last: TickResult | None = None

    def descriptor(self, model: str, version: int, fingerprint: str) -> Descriptor | str:
        """The version's descriptor, or why it cannot be had (cached per content)."""
        cached = self._descriptors.get((model, version))
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        name = version_prefix(self.store_settings.prefix, model, version) + DESCRIPTOR_NAME
        try:
            found: Descriptor | str = parse_descriptor(self.store.read(name))
        except DescriptorError as exc:
            found = f"bad {DESCRIPTOR_NAME}: {exc}"
        except StoreError as exc:
            return f"{DESCRIPTOR_NAME} could not be read: {exc}"  # not cached: try again
        self._descriptors[(model, version)] = (fingerprint, found)
        return found

    def _descriptors_for(
        self, catalog: Catalog, policy: Policy, existing: list[ServiceState]
    ) -> dict[tuple[str, int], object]:
        """The descriptors of the versions that may run: the wanted ones and, for
        ``held_versions``, those Swarm runs now."""
        running = {(s.model, s.version) for s in existing}
        out: dict[tuple[str, int], object] = {}
        for model, versions in container_versions(catalog).items():
            wanted = running_versions(model, versions, policy)
            for v in sorted(set(wanted) | {v for v in versions if (model, v) in running}):
                fp = catalog.models[model][v].fingerprint
                out[(model, v)] = self.descriptor(model, v, fp)
        return out

    def tick(self, catalog: Catalog, policy: Policy) -> TickResult:
        """One reconcile pass. SwarmError from reading Swarm's state propagates (nothing was
        changed); each failed change is recorded and the pass goes on."""
        with self._lock:
            existing = self.swarm.services()
            nodes = self.swarm.serving_nodes()
            descriptors = self._descriptors_for(catalog, policy, existing)
            now = self.clock()
            self._freed = {
                p: t for p, t in self._freed.items() if now - t < self.settings.cooling_s
            }
            plan = desired_services(
                catalog,
                policy,
                descriptors,  # type: ignore[arg-type]  # Descriptor | str, as read
                nodes,
                existing,
                self.settings,
                cooling=frozenset(self._freed),
            )
            ports = {s.name: s.host_port for s in existing}
            result = TickResult(problems=plan.problems, plan=plan)
            self._roll_back_unready(existing, result)
            for op in diff_services(plan, existing):
                if self._apply(op, result) and isinstance(op, Remove) and op.name in ports:
                    self._freed[ports[op.name]] = self.clock()
            self._report(plan.problems)
            self.last = result
            return result

    def _apply(self, op: Op, result: TickResult) -> bool:
        started = time.monotonic()
        detail: dict[str, object]
        if isinstance(op, Remove):
            what, model, version = f"remove {op.name}", op.model, op.version
            event, detail = "container_service_removed", {"service": op.name}
        else:
            spec = op.spec
            what = f"{type(op).__name__.lower()} {spec.name}"
            model, version = spec.model, spec.version
            detail = {
                "service": spec.name,
                "image": spec.image,
                "host_port": spec.host_port,
                "replicas": spec.replicas,
            }
            event = (
                "container_service_created"
                if isinstance(op, Create)
                else "container_service_scaled"
                if op.reason == "scale"
                else "container_service_updated"
            )
        try:
            if isinstance(op, Create):
                self.swarm.create(op.spec)
            elif isinstance(op, Update) and op.reason == "scale":
                self.swarm.scale(op.spec.name, op.spec.replicas)
            elif isinstance(op, Update):
                self.swarm.update(op.spec)
            else:
                self.swarm.remove(op.name)
        except SwarmError as exc:
            result.failed.append(f"{what}: {exc}")
            self._event("container_service_failed", model, {"version": version, "error": str(exc)})
            log.warning("container_service_failed", model=model, version=version, error=str(exc))
            return False
        result.applied.append(what)
        if isinstance(op, Create) or (isinstance(op, Update) and op.reason == "spec"):
            self._unready_since[(model, version)] = self.clock()  # ready_s counts from here
        seconds = round(time.monotonic() - started, 3)
        self._event(event, model, {"version": version, "seconds": seconds, **detail})
        log.info(event, model=model, version=version, seconds=seconds, **detail)
        return True

    def _roll_back_unready(self, existing: list[ServiceState], result: TickResult) -> None:
        """A version that has not passed ``/ping`` everywhere within ``ready_s`` while an
        older one is ready is rejected in the policy (``on_reject``): the next pass removes it
        and the ready one stays."""
        now = self.clock()
        unready = {(s.model, s.version) for s in existing if s.replicas > 0 and not s.ready}
        for key in list(self._unready_since):
            if key not in unready:
                del self._unready_since[key]
        for key in unready:
            self._unready_since.setdefault(key, now)
        if self.on_reject is None:
            return
        for model, version in to_roll_back(
            existing, self._unready_since, now, self.settings.ready_s
        ):
            why = f"its tasks did not pass GET /ping within {self.settings.ready_s:g} s"
            self.on_reject(model, version, why)
            result.rolled_back.append((model, version))
            del self._unready_since[(model, version)]
            log.warning("container_version_rolled_back", model=model, version=version, why=why)

    def _event(self, name: str, model: str, detail: dict[str, object]) -> None:
        if self.on_event is not None:
            self.on_event(name, model, detail)

    def _report(self, problems: tuple[str, ...]) -> None:
        for problem in problems:
            if problem not in self._reported:
                model = problem.split("/", 1)[0]
                self._event("container_version_not_run", model, {"problem": problem})
                log.warning("container_version_not_run", problem=problem)
        self._reported = set(problems)
