"""``modelsync config-manager``: keep TF Serving's model config in step with the node's disk.

Each ``tick()``: read the policy (the puller keeps the last good copy on the shared volume),
the installed versions and TF Serving's view; render the config (``specific`` versions, labels
only onto AVAILABLE versions — a held-back label is applied by a second reload once its version
is AVAILABLE); write it atomically; reload TF Serving over gRPC with a deadline and wait until
every aspired version is AVAILABLE or failed, up to ``load_timeout_s``; then prune what TF
Serving reports END. New installs are noticed within ``watch_s`` (a stat of the install records),
and a full pass runs every ``reconcile_s``. TF Serving down: the file stays current and the
config is pushed again as soon as it answers.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from config_manager.renderer import (
    AVAILABLE,
    END,
    DesiredModel,
    desired_models,
    policy_wanted,
    render_text,
    stage_labels,
    versions_to_prune,
)
from config_manager.tfs_client import ModelUnknown, ServingClient, ServingUnavailable, VersionState
from modelsync.heartbeat import EventBuffer
from modelsync.local import LocalLayout
from modelsync.log import configure_logging, get_logger
from modelsync.nodedaemon import serve
from modelsync.policy import Policy, PolicyError, parse_policy
from modelsync.remote import atomic_write
from modelsync.settings import Env, node_id_from_env

log = get_logger("config_manager")


@dataclass(frozen=True)
class ConfigManagerSettings:
    model_root: Path
    node_id: str
    tfserving: str = "127.0.0.1:8500"
    tfserving_model_root: str | None = None
    master_url: str | None = None
    node_token: str | None = None
    reconcile_s: float = 30.0
    watch_s: float = 0.1
    load_timeout_s: float = 300.0
    tfs_timeout_s: float = 10.0
    keep_on_disk: int = 1
    http_host: str = "127.0.0.1"
    http_port: int = 8002
    heartbeat_s: float = 10.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> ConfigManagerSettings:
        env = env or Env()
        return cls(
            model_root=Path(env.text("MODELSYNC_MODEL_ROOT", required=True)),
            node_id=node_id_from_env(env),
            tfserving=env.text("MODELSYNC_TFSERVING", "127.0.0.1:8500"),
            tfserving_model_root=env.opt_text("MODELSYNC_TFSERVING_MODEL_ROOT"),
            master_url=env.opt_text("MODELSYNC_MASTER_URL"),
            node_token=env.secret("MODELSYNC_NODE_TOKEN"),
            reconcile_s=env.number("MODELSYNC_RECONCILE_S", 30.0, minimum=0.1),
            watch_s=env.number("MODELSYNC_WATCH_S", 0.1, minimum=0.01, maximum=60),
            load_timeout_s=env.number("MODELSYNC_LOAD_TIMEOUT_S", 300.0, minimum=1),
            tfs_timeout_s=env.number("MODELSYNC_TFS_TIMEOUT_S", 10.0, minimum=0.1),
            keep_on_disk=env.integer("MODELSYNC_KEEP_ON_DISK", 1, minimum=0, maximum=100),
            http_host=env.text("MODELSYNC_HTTP_HOST", "127.0.0.1"),
            http_port=env.integer("MODELSYNC_HTTP_PORT", 8002, minimum=0, maximum=65535),
            heartbeat_s=env.number("MODELSYNC_HEARTBEAT_S", 10.0, minimum=0.5),
        )


@dataclass
class TickResult:
    tfserving_up: bool = False
    pushed: int = 0
    reload_errors: list[str] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)
    pruned: list[tuple[str, int]] = field(default_factory=list)
    settled: bool = True
    seconds: float = 0.0


class ConfigManagerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.reloads = Counter("modelsync_config_manager_reloads", "Reloads by outcome.",
                               ["outcome"], registry=r)
        self.reload_seconds = Histogram("modelsync_config_manager_reload_seconds",
                                        "From reload request to every version settled.",
                                        registry=r, buckets=(.1, .25, .5, 1, 2.5, 5, 10, 30,
                                                             60, 300))
        self.load_failures = Counter("modelsync_config_manager_load_failures",
                                     "Versions that failed to load.", registry=r)
        self.pruned = Counter("modelsync_config_manager_pruned_versions",
                              "Versions removed from disk.", registry=r)
        self.tfs_up = Gauge("modelsync_config_manager_tfserving_up",
                            "1 when TF Serving answered at the last pass.", registry=r)
        self.available = Gauge("modelsync_config_manager_available_versions",
                               "Versions TF Serving reports AVAILABLE.", registry=r)


class ConfigManager:
    role = "config_manager"

    def __init__(self, settings: ConfigManagerSettings) -> None:
        self.settings = settings
        self.layout = LocalLayout(settings.model_root)
        self.layout.ensure()
        self.client = ServingClient(settings.tfserving, settings.tfs_timeout_s)
        self.metrics = ConfigManagerMetrics()
        self.events = EventBuffer(maxlen=1000)
        self.stop_event = threading.Event()
        self.sync_event = threading.Event()
        self._lock = threading.Lock()
        self._failed: dict[tuple[str, int], str] = {}  # -> fingerprint that failed
        self._pushed_text: str | None = None
        self._pushed: dict[str, DesiredModel] = {}
        self._tfs_up: bool | None = None
        self._states: dict[str, dict[int, VersionState]] = {}
        self._last_reload: dict[str, Any] | None = None
        self._last_tick: TickResult | None = None
        self._last_tick_at: float | None = None
        self._policy_problem: str | None = None

    # --- helpers -------------------------------------------------------------------------------
    def event(self, name: str, level: str = "info", **fields: Any) -> None:
        self.events.add({"event": name, "at": time.time(), **fields})
        getattr(log, level)(name, **fields)

    def _policy(self) -> Policy:
        path = self.layout.state_dir / "policy.json"
        try:
            doc = json.loads(path.read_bytes())
            policy = parse_policy(doc["policy"])
            self._policy_problem = None
            return policy
        except FileNotFoundError:
            return Policy()
        except (OSError, ValueError, KeyError, TypeError, PolicyError) as exc:
            if self._policy_problem != str(exc):
                self._policy_problem = str(exc)
                self.event("local_policy_unreadable", "error", error=str(exc))
            return Policy()

    def _tfs_root(self) -> str:
        return self.settings.tfserving_model_root or str(self.settings.model_root)

    def _read_states(self, names: set[str]) -> dict[str, dict[int, VersionState]] | None:
        states: dict[str, dict[int, VersionState]] = {}
        try:
            for name in sorted(names):
                try:
                    states[name] = {s.version: s for s in self.client.model_status(name)}
                except ModelUnknown:
                    states[name] = {}
        except ServingUnavailable as exc:
            if self._tfs_up is not False:
                self.event("tfserving_unavailable", "warning", target=self.settings.tfserving,
                           error=str(exc))
            self._tfs_up = False
            self.metrics.tfs_up.set(0)
            return None
        if self._tfs_up is False:
            self.event("tfserving_back", target=self.settings.tfserving)
        self._tfs_up = True
        self.metrics.tfs_up.set(1)
        self._states = states
        return states

    def _note_failures(self, states: dict[str, dict[int, VersionState]],
                       fingerprints: dict[tuple[str, int], str], result: TickResult) -> None:
        for model, versions in states.items():
            pushed = set(self._pushed.get(model, DesiredModel(model, "", ())).versions)
            for v, s in versions.items():
                key = (model, v)
                if (s.state == END and s.error_code != 0 and v in pushed
                        and key in fingerprints and key not in self._failed):
                    self._failed[key] = fingerprints[key]
                    self.metrics.load_failures.inc()
                    result.failed.append(key)
                    self.event("version_load_failed", "error", model=model, version=v,
                               error=s.error_message, code=s.error_code)

    def _failed_by_model(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for (m, v) in self._failed:
            out.setdefault(m, set()).add(v)
        return out

    # --- one pass ------------------------------------------------------------------------------
    def tick(self) -> TickResult:
        started = time.monotonic()
        result = TickResult()
        policy = self._policy()
        inventory = self.layout.inventory()
        fingerprints = {(m, v): r.fingerprint for m, vs in inventory.items()
                        for v, r in vs.items() if r is not None}
        # a version whose content changed since it failed gets another chance
        self._failed = {k: fp for k, fp in self._failed.items() if fingerprints.get(k) == fp}
        installed = {m: {v for v, r in vs.items() if r is not None}
                     for m, vs in inventory.items()}
        names = set(installed) | set(self._pushed)
        states = self._read_states(names)
        result.tfserving_up = states is not None
        if states is not None:
            self._note_failures(states, fingerprints, result)
        desired = desired_models(installed, self._failed_by_model(), policy, self._tfs_root())
        available = self._available(states or {})
        staged, held = stage_labels(desired, available)
        text = render_text(staged)
        self._write_config(text)
        if states is not None:
            restarted = self._restarted(states, staged)
            if text != self._pushed_text or restarted:
                if restarted and self._pushed_text is not None:
                    self.event("tfserving_restarted_or_behind", "warning")
                self._push(text, staged, result)
                if held and self._tfs_up:
                    states = self._read_states(set(staged) | set(self._pushed)) or {}
                    staged, held = stage_labels(desired, self._available(states))
                    text = render_text(staged)
                    self._write_config(text)
                    if text != self._pushed_text:
                        self._push(text, staged, result)
            if self._tfs_up:
                if result.pushed:  # what TF Serving reports after the reload, not before it
                    states = self._read_states(set(installed) | set(staged))
                if states is not None:
                    on_disk = {m: set(vs) for m, vs in inventory.items()}
                    self._prune(on_disk, installed, staged, policy, states, result)
        result.seconds = round(time.monotonic() - started, 3)
        with self._lock:
            self._last_tick = result
            self._last_tick_at = time.time()
        self.metrics.available.set(sum(len(a) for a in self._available(self._states).values()))
        if result.failed:
            self.sync_event.set()  # re-render at once without the failed versions
        return result

    @staticmethod
    def _available(states: dict[str, dict[int, VersionState]]) -> dict[str, set[int]]:
        return {m: {v for v, s in vs.items() if s.state == AVAILABLE} for m, vs in states.items()}

    def _restarted(self, states: dict[str, dict[int, VersionState]],
                   staged: dict[str, DesiredModel]) -> bool:
        """TF Serving does not know a version the pushed config asks for: it restarted (or
        lost it); push again."""
        if self._pushed_text is None:
            return True
        for name, dm in self._pushed.items():
            if name in staged and not set(dm.versions) <= set(states.get(name, {})):
                return True
        return False

    def _write_config(self, text: str) -> None:
        path = self.layout.config_path
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        atomic_write(path, text.encode())

    def _push(self, text: str, staged: dict[str, DesiredModel], result: TickResult) -> None:
        started = time.monotonic()
        try:
            code, message = self.client.reload(text, timeout_s=self.settings.load_timeout_s)
        except ServingUnavailable as exc:
            self._tfs_up = False
            self.metrics.reloads.labels("unavailable").inc()
            self.event("reload_failed", "warning", error=str(exc))
            result.reload_errors.append(str(exc))
            return
        self._pushed_text, self._pushed = text, dict(staged)
        result.pushed += 1
        if code != 0:
            # e.g. a new model whose only version failed to load: the config still applies;
            # the failure shows up in the version states below
            self.metrics.reloads.labels("error").inc()
            result.reload_errors.append(message)
            self.event("reload_error", "warning", code=code, error=message)
        settled = self._wait_settled(staged)
        seconds = round(time.monotonic() - started, 3)
        self.metrics.reload_seconds.observe(seconds)
        if code == 0:
            self.metrics.reloads.labels("ok").inc()
        result.settled = result.settled and settled
        self._last_reload = {"at": time.time(), "code": code, "error": message,
                             "seconds": seconds, "settled": settled,
                             "models": {m: list(dm.versions) for m, dm in staged.items()}}
        self.event("config_reloaded", models=len(staged), seconds=seconds, settled=settled,
                   versions={m: list(dm.versions) for m, dm in staged.items()})

    def _wait_settled(self, staged: dict[str, DesiredModel]) -> bool:
        deadline = time.monotonic() + self.settings.load_timeout_s
        while time.monotonic() < deadline and not self.stop_event.is_set():
            states = self._read_states(set(staged))
            if states is None:
                return False
            pending = False
            for name, dm in staged.items():
                for v in dm.versions:
                    s = states.get(name, {}).get(v)
                    if s is None or s.state not in (AVAILABLE, END):
                        pending = True
            if not pending:
                return True
            time.sleep(0.1)
        self.event("load_timeout", "warning", seconds=self.settings.load_timeout_s)
        return False

    def _prune(self, on_disk: dict[str, set[int]], installed: dict[str, set[int]],
               staged: dict[str, DesiredModel], policy: Policy,
               states: dict[str, dict[int, VersionState]], result: TickResult) -> None:
        """``on_disk`` is the tick's own snapshot: a version the puller installs while the
        tick runs is not aspired yet, and must not be mistaken for a stale one."""
        state_names = {m: {v: s.state for v, s in vs.items()} for m, vs in states.items()}
        aspired = {m: set(dm.versions) for m, dm in staged.items()}
        protected = policy_wanted(installed, policy)
        for model, version in versions_to_prune(on_disk, aspired, state_names,
                                                self._failed_by_model(),
                                                self.settings.keep_on_disk, protected):
            target = self.layout.version_dir(model, version)
            trash = self.layout.new_incoming()
            try:
                os.rename(target, trash / "pruned")
                self.layout.remove_record(model, version)
            finally:
                shutil.rmtree(trash, ignore_errors=True)
            self._failed.pop((model, version), None)
            self.metrics.pruned.inc()
            result.pruned.append((model, version))
            self.event("version_pruned", model=model, version=version,
                       tfserving_state=state_names.get(model, {}).get(version, "unknown"))

    # --- loop and HTTP -------------------------------------------------------------------------
    def _watch_signature(self) -> tuple[int, ...]:
        sig = []
        for path in (self.layout.installed, self.layout.state_dir / "policy.json",
                     self.layout.root):
            try:
                sig.append(path.stat().st_mtime_ns)
            except OSError:
                sig.append(0)
        try:
            for entry in os.scandir(self.layout.installed):
                sig.append(entry.stat().st_mtime_ns)
        except OSError:
            pass
        return tuple(sig)

    def run(self) -> None:
        last_sig: tuple[int, ...] | None = None
        last_tick = 0.0
        while not self.stop_event.is_set():
            sig = self._watch_signature()
            due = time.monotonic() - last_tick >= self.settings.reconcile_s
            if sig != last_sig or due or self.sync_event.is_set():
                self.sync_event.clear()
                try:
                    self.tick()
                except OSError as exc:
                    self.event("tick_failed", "error", error=str(exc))
                last_sig, last_tick = sig, time.monotonic()
                continue
            self.sync_event.wait(self.settings.watch_s)

    def status(self) -> dict[str, Any]:
        with self._lock:
            last = self._last_tick
        events = self.events.recent(50)
        return {
            "node_id": self.settings.node_id, "role": "config_manager",
            "tfserving": self.settings.tfserving, "tfserving_up": self._tfs_up,
            "config": self._pushed_text,
            "tfserving_view": {m: {str(v): {"state": s.state, "error_code": s.error_code,
                                            "error": s.error_message} for v, s in vs.items()}
                               for m, vs in self._states.items()},
            "last_reload": self._last_reload,
            "last_tick": None if last is None else {
                "at": self._last_tick_at, "seconds": last.seconds, "pushed": last.pushed,
                "errors": last.reload_errors, "settled": last.settled,
                "pruned": [f"{m}/{v}" for m, v in last.pruned]},
            "failed": [{"model": m, "version": v, "fingerprint": fp}
                       for (m, v), fp in self._failed.items()],
            "events": events,
        }

    def summary(self) -> dict[str, Any]:
        """What the master needs of this node (heartbeat status)."""
        return {"available": {m: sorted(vs) for m, vs in self._available(self._states).items()
                              if vs},
                "states": {m: {str(v): s.state for v, s in vs.items()}
                           for m, vs in self._states.items()},
                "tfserving_up": self._tfs_up,
                "failed": [f"{m}/{v}" for (m, v) in self._failed],
                "last_reload": self._last_reload}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        ok = self._last_tick_at is not None and self.layout.config_path.exists()
        return ok, {"tfserving_up": self._tfs_up}

    def close(self) -> None:
        self.stop_event.set()
        self.sync_event.set()
        self.client.close()


def main(port: int | None = None) -> int:
    configure_logging(os.environ.get("MODELSYNC_LOG_LEVEL", "info"), json_output=True)
    settings = ConfigManagerSettings.from_env()
    if port is not None:
        settings = replace(settings, http_port=port)
    manager = ConfigManager(settings)
    return serve(manager, settings, manager.metrics.registry, log, lambda http_port: log.info(
        "config_manager_started", node_id=settings.node_id,
        model_root=str(settings.model_root), tfserving=settings.tfserving,
        http=f"{settings.http_host}:{http_port}"))
