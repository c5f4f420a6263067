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

import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from config_manager.availability import AvailabilityLog
from config_manager.checks import shadowed
from config_manager.gate import ValidationGate
from config_manager.metrics import ConfigManagerMetrics
from config_manager.observed import FailureBook, ServingView
from config_manager.planner import (
    DEADLINE_EXCEEDED,
    Observed,
    ReloadPlan,
    ReloadState,
    after_push,
    failed_by_model,
    keep_failures,
    plan_reload,
)
from config_manager.renderer import DesiredModel, policy_wanted, versions_to_prune
from config_manager.report import TickResult, status_doc, summary_doc
from config_manager.serving import (
    AVAILABLE,
    END,
    ModelUnknown,
    ReloadTimeout,
    ServingClient,
    ServingUnavailable,
    VersionState,
)
from config_manager.settings import ConfigManagerSettings
from config_manager.telemetry import TelemetryReader
from config_manager.tfs_client import GrpcServingClient
from config_manager.validation import GrpcValidator, Validator
from modelsync.events import EventLog
from modelsync.local import InstallRecord, LocalLayout, LocalStateError
from modelsync.log import get_logger
from modelsync.nodedaemon import serve
from modelsync.policy import Policy
from modelsync.reports import ConfigManagerStatus, ReloadReport
from modelsync.telemetry import Outbox

log = get_logger("config_manager")

Inventory = Mapping[str, Mapping[int, InstallRecord | None]]
States = dict[str, dict[int, VersionState]]


def fingerprints(inventory: Inventory) -> dict[str, dict[int, str]]:
    """The versions on disk that have an install record, with the record's fingerprint."""
    return {
        m: {v: r.fingerprint for v, r in vs.items() if r is not None} for m, vs in inventory.items()
    }


def sizes(inventory: Inventory) -> dict[tuple[str, int], int]:
    return {(m, v): r.bytes for m, vs in inventory.items() for v, r in vs.items() if r is not None}


class ConfigManager:
    role = "config_manager"

    def __init__(
        self,
        settings: ConfigManagerSettings,
        client: ServingClient | None = None,
        validator: Validator | None = None,
    ) -> None:
        self.settings = settings
        self.layout = LocalLayout(settings.model_root)
        self.layout.ensure()
        self.client: ServingClient = client or GrpcServingClient(
            settings.tfserving, settings.tfs_timeout_s
        )
        if settings.validate and validator is None:
            validator = GrpcValidator(settings.tfserving, settings.load_timeout_s)
        self.events = EventLog(log)
        self.gate = ValidationGate(
            self.layout, validator if settings.validate else None, self.events
        )
        self.metrics = ConfigManagerMetrics()
        self.stop_event = threading.Event()
        self.sync_event = threading.Event()
        # what the passes remember: the planner's state, what TF Serving was seen doing, why
        # versions are left out, and what the last pass and reload did (for the report)
        self.reload_state = ReloadState()
        self.serving = ServingView()
        self.failures = FailureBook()
        self.availability = AvailabilityLog(self.layout)
        self.last_tick: TickResult | None = None
        self.last_reload: ReloadReport | None = None
        self._sizes: dict[tuple[str, int], int] = {}
        self._policy_problem: str | None = None
        self.outbox = Outbox()  # request telemetry, carried by the heartbeats
        self.telemetry = TelemetryReader(
            settings.tfserving_metrics_url,
            settings.telemetry_s or 1.0,
            self.outbox,
            counted=lambda m: shadowed(m) is None,  # a shadow's figures are the gate's
            available=self.serving.available,
            stop=self.stop_event,
        )

    # --- helpers -------------------------------------------------------------------------------
    def _policy(self) -> Policy:
        """The puller's last good copy of the policy (one reader of the bucket per node)."""
        try:
            saved = self.layout.read_policy()
        except LocalStateError as exc:
            if self._policy_problem != str(exc):
                self._policy_problem = str(exc)
                self.events.emit("local_policy_unreadable", "error", error=str(exc))
            return Policy()
        self._policy_problem = None
        return Policy() if saved is None else saved.policy

    def _read_states(self, names: set[str]) -> States | None:
        states: States = {}
        target = self.settings.tfserving
        try:
            for name in sorted(names):
                try:
                    states[name] = {s.version: s for s in self.client.model_status(name)}
                except ModelUnknown:
                    states[name] = {}
        except ServingUnavailable as exc:
            if self.serving.unreachable(time.monotonic()):
                self.events.emit("tfserving_unavailable", "warning", target=target, error=str(exc))
            self.metrics.tfs_up.set(0)
            return None
        down_s = self.serving.answered(states, time.monotonic())
        if down_s is not None:
            self.events.emit("tfserving_back", target=target, down_s=down_s)
        self.metrics.tfs_up.set(1)
        self.availability.update(states, time.time())
        return states

    def _remember(self, state: ReloadState) -> None:
        """The planner's memory moves on, and the book of failures with it."""
        self.reload_state = state
        self.failures.settle(state.failed, self.gate.reasons())

    def _plan(
        self,
        installed: dict[str, dict[int, str]],
        states: States | None,
        policy: Policy,
        result: TickResult,
    ) -> ReloadPlan:
        validated, rejected = self.gate.verdicts()
        now = time.monotonic()
        seen = Observed(installed, states, now, validated, rejected, self._sizes)
        plan = plan_reload(seen, policy, self.reload_state, self.settings.plan)
        cfg = self.settings
        limit, factor = cfg.memory_limit_bytes, cfg.memory_factor
        for model in plan.swapping - self.reload_state.swapping:
            self.events.emit(
                "swap_unload_first", "warning", model=model, limit_bytes=limit, factor=factor
            )
        for model, s in plan.newly_failed:
            self.failures.load_failed((model, s.version), s.error_message)
            self.metrics.load_failures.inc()
            result.failed.append((model, s.version))
            self.events.emit(
                "version_load_failed",
                "error",
                model=model,
                version=s.version,
                error=s.error_message,
                code=s.error_code,
            )
        down_s = self.serving.take_downtime()
        if plan.restarted:
            # TF Serving no longer knows versions it was given: it restarted (or lost them)
            self.metrics.tfs_restarts.inc()
            self.events.emit("tfserving_restarted", "warning", target=cfg.tfserving, down_s=down_s)
        self._remember(keep_failures(self.reload_state, plan))
        return plan

    # --- one pass ------------------------------------------------------------------------------
    def tick(self) -> TickResult:
        started, result = time.monotonic(), TickResult()
        policy = self._policy()
        inventory = self.layout.inventory()
        installed, self._sizes = fingerprints(inventory), sizes(inventory)
        states = self._read_states(set(installed) | set(self.reload_state.pushed))
        result.tfserving_up = states is not None
        plan = self._plan(installed, states, policy, result)
        self.layout.write_config(plan.text)
        if plan.push and self._push(plan, result) and plan.held_labels:
            plan = self._move_held_labels(plan, installed, policy, result)
        pending = plan.pending if self.serving.up else ()
        if pending and self.gate.run(pending, self.serving.states, installed):
            self.sync_event.set()  # verdicts in: the next pass swaps the shadows for the real
        if result.tfserving_up and self.serving.up:
            if result.pushed:  # what TF Serving reports after the reload, not before it
                states = self._read_states(set(installed) | set(plan.staged))
            if states is not None:
                on_disk = {m: set(vs) for m, vs in inventory.items()}
                self._prune(on_disk, installed, plan.staged, policy, states, result)
        self.last_tick = result.finish(started)
        self.metrics.available.set(sum(len(a) for a in self.serving.available().values()))
        if result.failed:
            self.sync_event.set()  # re-render at once without the failed versions
        return result

    def _move_held_labels(
        self,
        plan: ReloadPlan,
        installed: dict[str, dict[int, str]],
        policy: Policy,
        result: TickResult,
    ) -> ReloadPlan:
        """A label waited for its version: now that the reload settled, move it."""
        states = self._read_states(set(plan.staged) | set(self.reload_state.pushed))
        if states is None:
            return plan
        plan = self._plan(installed, states, policy, result)
        self.layout.write_config(plan.text)
        if plan.push:
            self._push(plan, result)
        return plan

    def _push(self, plan: ReloadPlan, result: TickResult) -> bool:
        """Reload TF Serving with ``plan``'s config and wait until it settles. False if TF
        Serving did not take it."""
        started = time.monotonic()
        try:
            code, message = self.client.reload(plan.text, timeout_s=self.settings.load_timeout_s)
        except ReloadTimeout as exc:  # taken, still loading a new model: wait on its state
            code, message = DEADLINE_EXCEEDED, str(exc)
        except ServingUnavailable as exc:
            self.serving.unreachable(time.monotonic())
            self.metrics.reloads.labels("unavailable").inc()
            self.events.emit("reload_failed", "warning", error=str(exc))
            result.reload_errors.append(str(exc))
            return False
        self._remember(after_push(self.reload_state, plan))
        result.pushed += 1
        if code != 0:
            # e.g. a new model whose only version failed to load: the config still applies;
            # the failure shows up in the version states below
            self.metrics.reloads.labels("error").inc()
            result.reload_errors.append(message)
            self.events.emit("reload_error", "warning", code=code, error=message)
        settled = self._wait_settled(plan.staged)
        seconds = round(time.monotonic() - started, 3)
        self.metrics.reload_seconds.observe(seconds)
        if code == 0:
            self.metrics.reloads.labels("ok").inc()
        result.settled = result.settled and settled
        versions = {m: list(dm.versions) for m, dm in plan.staged.items()}
        self.last_reload = {
            "at": time.time(),
            "code": code,
            "error": message,
            "seconds": seconds,
            "settled": settled,
            "models": versions,
        }
        self.events.emit(
            "config_reloaded",
            models=len(plan.staged),
            seconds=seconds,
            settled=settled,
            versions=versions,
        )
        return True

    def _wait_settled(self, staged: Mapping[str, DesiredModel]) -> bool:
        """Wait until every pushed version is AVAILABLE or END, up to ``load_timeout_s`` —
        or until new work arrives (an install, a policy change): a slow or stuck load never
        holds back the versions behind it; they get their own reload at once."""
        deadline = time.monotonic() + self.settings.load_timeout_s
        start_sig = self.layout.watch_signature()
        while time.monotonic() < deadline and not self.stop_event.is_set():
            states = self._read_states(set(staged))
            if states is None:
                return False
            if all(
                states.get(name, {}).get(v) is not None
                and states[name][v].state in (AVAILABLE, END)
                for name, dm in staged.items()
                for v in dm.versions
            ):
                return True
            if self.layout.watch_signature() != start_sig:
                self.events.emit("reload_wait_interrupted", reason="new installs or policy")
                return False
            time.sleep(0.1)
        if not self.stop_event.is_set():
            self.events.emit("load_timeout", "warning", seconds=self.settings.load_timeout_s)
        return False

    def _prune(
        self,
        on_disk: dict[str, set[int]],
        installed: Mapping[str, Mapping[int, str]],
        staged: Mapping[str, DesiredModel],
        policy: Policy,
        states: States,
        result: TickResult,
    ) -> None:
        """``on_disk`` is the tick's own snapshot: a version the puller installs while the
        tick runs is not aspired yet, and must not be mistaken for a stale one."""
        state_names = {m: {v: s.state for v, s in vs.items()} for m, vs in states.items()}
        aspired = {m: set(dm.versions) for m, dm in staged.items()}
        recorded = {m: set(vs) for m, vs in installed.items()}
        protected = policy_wanted(recorded, policy, self.settings.node.node_id)
        failed = failed_by_model(self.reload_state.failed)
        for model, version in versions_to_prune(
            on_disk, aspired, state_names, failed, self.settings.keep_on_disk, protected
        ):
            self.layout.remove_version(model, version)
            self.gate.forget(model, version)
            failed_now = {
                k: fp for k, fp in self.reload_state.failed.items() if k != (model, version)
            }
            self._remember(replace(self.reload_state, failed=failed_now))
            self.metrics.pruned.inc()
            result.pruned.append((model, version))
            self.events.emit(
                "version_pruned",
                model=model,
                version=version,
                tfserving_state=state_names.get(model, {}).get(version, "unknown"),
            )

    # --- loop and HTTP -------------------------------------------------------------------------
    def run(self) -> None:
        if self.settings.telemetry_s > 0:
            self.telemetry.start()
        last_sig: tuple[int, ...] | None = None
        last_tick = 0.0
        while not self.stop_event.is_set():
            sig = self.layout.watch_signature()
            every = 1.0 if self.reload_state.swapping else self.settings.reconcile_s  # mid-swap
            due = time.monotonic() - last_tick >= every
            if sig != last_sig or due or self.sync_event.is_set():
                self.sync_event.clear()
                try:
                    self.tick()
                except OSError as exc:
                    self.events.emit("tick_failed", "error", error=str(exc))
                last_sig, last_tick = sig, time.monotonic()
                continue
            self.sync_event.wait(self.settings.watch_s)

    def status(self) -> dict[str, Any]:
        return status_doc(self)

    def summary(self) -> ConfigManagerStatus:
        """What the master needs of this node (heartbeat status)."""
        return summary_doc(self)

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Not ready before the first pass, and while a model swaps unload-first here (it is
        not served on this node meanwhile: the load balancer should drain it)."""
        ok = self.last_tick is not None and self.layout.config_path.exists()
        swapping = sorted(self.reload_state.swapping)
        reason = (
            f"swapping {', '.join(swapping)} unload-first (memory limit)"
            if swapping
            else None
            if ok
            else "no pass yet"
        )
        return ok and not swapping, {"tfserving_up": self.serving.up, "reason": reason}

    def close(self) -> None:
        self.stop_event.set()
        self.sync_event.set()
        self.client.close()
        self.gate.close()


def main(port: int | None = None) -> int:
    settings = ConfigManagerSettings.from_env()
    settings = replace(settings, node=settings.node.with_port(port))
    where = {"model_root": str(settings.model_root), "tfserving": settings.tfserving}
    return serve(settings.node, lambda: ConfigManager(settings), log, **where)
