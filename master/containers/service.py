"""The master's container models, between the reconciler and the API.

The process that runs the master's background jobs runs the reconciler's loop (every
``container_s``, and at once when woken: a publication, a start or a stop) when it can reach
the Docker socket (``MODELSYNC_DOCKER``: auto = when ``MODELSYNC_DOCKER_SOCKET`` exists). After
each pass it records what runs — each service's model, version, host port, replicas, image and
its tasks' states — in SQLite, so every worker answers from it: the gateways' heartbeat
answers (``routes_for``: the container versions a node serves and where they listen) and
``GET /v1/containers``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from master.containers.plan import node_routes
from master.containers.reconciler import ContainerReconciler
from master.containers.swarm import DockerSwarm, SwarmError, SwarmServices
from master.db import Database
from master.settings import MasterSettings
from modelsync.catalog import Catalog
from modelsync.log import get_logger
from modelsync.policy import Policy
from modelsync.store import RemoteStore, StoreError

log = get_logger("master")
META = "containers_running"
FAILED = ("failed", "rejected")  # a task's end that is not a stop the master asked for


class Containers:
    def __init__(
        self,
        settings: MasterSettings,
        db: Database,
        store: RemoteStore,
        inputs: Callable[[], tuple[Catalog | None, Policy]],
        swarm: SwarmServices | None = None,
        reject: Callable[[str, int, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.inputs = inputs
        self.swarm = swarm
        self.reject = reject
        self.reconciler: ContainerReconciler | None = None
        self._wake = threading.Event()
        self._cache: tuple[float, dict[str, Any]] | None = None
        self._failed_seen: set[str] = set()  # task ids already reported

    # --- the loop (one process) ---------------------------------------------------------------
    def start(self, stop: threading.Event) -> bool:
        """Start the loop when Swarm can be reached; False (and nothing runs) when it cannot."""
        if self.swarm is None:
            mode, sock = self.settings.docker, self.settings.docker_socket
            if mode == "off" or (mode == "auto" and not os.path.exists(sock)):
                why = "MODELSYNC_DOCKER=off" if mode == "off" else f"no Docker socket at {sock}"
                self._record_off(f"container models are not run by this master: {why}")
                return False
            self.swarm = DockerSwarm(sock, self.settings.containers.name_prefix)
        self.reconciler = ContainerReconciler(
            self.store,
            self.settings.store,
            self.swarm,
            self.settings.containers,
            on_event=self._event,
            on_reject=self.reject,
        )
        threading.Thread(target=self._loop, args=(stop,), name="containers", daemon=True).start()
        log.info("container_reconciler_started", socket=self.settings.docker_socket)
        return True

    def _record_off(self, why: str) -> None:
        """Say why nothing runs, where every worker reads (a model page shows it): a container
        model published to a master without Docker would otherwise converge for ever, unsaid."""
        self.db.set_meta(
            META, json.dumps({"at": time.time(), "services": [], "problems": [], "error": why})
        )
        self._cache = None
        log.info("container_reconciler_off", why=why)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.tick()
            self._wake.wait(self.settings.container_s)
            self._wake.clear()

    def tick(self) -> None:
        """One pass; what goes wrong is recorded (and shown by ``GET /v1/containers``)."""
        assert self.reconciler is not None and self.swarm is not None
        try:
            catalog, policy = self.inputs()
            if catalog is None:
                return
            result = self.reconciler.tick(catalog, policy)
            services = []
            for spec in result.plan.services if result.plan else ():
                try:
                    tasks = self.swarm.tasks(spec.name)
                except SwarmError as exc:
                    tasks = [{"error": str(exc)}]
                self._report_failures(spec.model, spec.version, tasks)
                services.append(
                    {
                        "model": spec.model,
                        "version": spec.version,
                        "service": spec.name,
                        "image": spec.image,
                        "host_port": spec.host_port,
                        "replicas": spec.replicas,
                        "running": sum(1 for t in tasks if t.get("state") == "running"),
                        "failed": sum(1 for t in tasks if t.get("state") in FAILED),
                        "tasks": tasks,
                    }
                )
            doc = {
                "at": time.time(),
                "services": services,
                "problems": list(result.problems) + result.failed,
                "error": None,
            }
        except Exception as exc:  # the loop goes on; what failed is recorded
            if not isinstance(exc, SwarmError | StoreError):
                log.exception("container_tick_failed")
            previous = self._read()
            doc = {**previous, "at": time.time(), "error": f"{type(exc).__name__}: {exc}"}
        self.db.set_meta(META, json.dumps(doc))
        self._cache = None

    def _report_failures(self, model: str, version: int, tasks: list[dict[str, Any]]) -> None:
        """A task that failed (the container exited, or Swarm could not start it: Swarm starts
        another) is an event, once per task: the console's event log shows crashes."""
        for task in tasks:
            task_id = task.get("id")
            if task.get("state") not in FAILED or not task_id or task_id in self._failed_seen:
                continue
            self._failed_seen.add(task_id)
            detail = {
                "version": version,
                "task": task_id,
                "node": task.get("node"),
                "state": task.get("state"),
                "error": task.get("error"),
                "exit_code": task.get("exit_code"),
            }
            self._event("container_task_failed", model, detail)
            log.warning("container_task_failed", model=model, **detail)

    def _event(self, name: str, model: str, detail: dict[str, object]) -> None:
        self.db.add_event("master", name, model=model, detail=detail)

    # --- reads (every worker) ----------------------------------------------------------------
    def _read(self, max_age_s: float = 0.0) -> dict[str, Any]:
        cached = self._cache
        if cached is not None and time.monotonic() - cached[0] < max_age_s:
            return cached[1]
        doc = self._load()
        self._cache = (time.monotonic(), doc)
        return doc

    def _load(self) -> dict[str, Any]:
        raw = self.db.get_meta(META)
        return (
            json.loads(raw) if raw else {"at": None, "services": [], "problems": [], "error": None}
        )

    def status(self) -> dict[str, Any]:
        return self._read()

    def problems_of(self, model: str) -> list[str]:
        """What keeps ``model``'s containers from running, for its view: the reconciler off or
        its last pass failed, and its plan's problems with this model's versions."""
        doc = self._load()  # a page's read: fresh, and leaves the heartbeats' cache alone
        out = [f"Containers: {doc['error']}"] if doc.get("error") else []
        return out + [p for p in doc.get("problems", []) if p.startswith(model + "/")]

    def routes_for(self, node_id: str, catalog: Catalog | None, policy: Policy) -> dict[str, Any]:
        """The container versions ``node_id`` serves that run, and their host ports."""
        if catalog is None:
            return {}
        running = {
            (s["model"], int(s["version"])): int(s["host_port"])
            for s in self._read(max_age_s=1.0)["services"]
            if s.get("replicas", 0) > 0
        }
        return node_routes(running, catalog, policy, node_id)
