"""The model manager: aspired versions, loads off the request path, safe unloads, labels.

A reconcile thread applies ``tfserving.policy.next_actions`` to every model whenever something
changes (a config reload, a filesystem poll, a load finishing, a request releasing a version).
Loads run in a pool of ``num_load_threads``, each with the version's warmup (a failed warmup is a
failed load); an unload first waits for the requests in flight on that version to finish.
Requests take a reference on one AVAILABLE version for their duration.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelsync.log import get_logger
from tfserving.entries import ModelConfig, ModelEntry, VersionEntry, VersionStatus
from tfserving.errors import ServingError
from tfserving.policy import (
    Snapshot,
    State,
    aspired_versions,
    next_actions,
    resolve_version,
    version_dirs,
)

log = get_logger("model_server")


class ModelManager:
    def __init__(
        self,
        loader: Callable[[str], Any],
        *,
        num_load_threads: int = 2,
        max_num_load_retries: int = 5,
        load_retry_interval_s: float = 60.0,
        allow_labels_for_unavailable: bool = False,
        on_change: Callable[[], None] | None = None,
        warmup_iterations: int = 1,
    ) -> None:
        self._loader = loader
        self._cv = threading.Condition(threading.RLock())
        self._models: dict[str, ModelEntry] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, num_load_threads), thread_name_prefix="load"
        )
        self._unload_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="unload")
        self._max_loads = max(1, num_load_threads)
        self._retries = max(0, max_num_load_retries)
        self._retry_interval_s = max(0.0, load_retry_interval_s)
        self._allow_unavailable_labels = allow_labels_for_unavailable
        self._dirty = threading.Event()
        self._stopping = False
        self._on_change = on_change
        self._warmup_recorder: Callable[[str, str, int, int], None] | None = None
        self._warmup_iterations = warmup_iterations  # 0: --enable_model_warmup=false
        self._thread = threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True)
        self._thread.start()

    # --- configuration -------------------------------------------------------------------------
    def reload(self, configs: list[ModelConfig], wait_timeout_s: float = 600.0) -> None:
        """Replace the whole model list, like TF Serving's HandleReloadConfigRequest.

        Models left out are unloaded. Waits until newly added models have a version AVAILABLE
        (or failed), then applies the version labels: a label may point only at an AVAILABLE
        version (FAILED_PRECONDITION otherwise, labels unchanged) unless the server was started
        with --allow_version_labels_for_unavailable_models.
        """
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ServingError("INVALID_ARGUMENT", "model names in the config must be unique")
        with self._cv:
            added = [n for n in names if n not in self._models or not self._models[n].in_config]
            wanted = {c.name: c for c in configs}
            for name, entry in self._models.items():
                if name not in wanted and entry.in_config:
                    entry.in_config = False
                    entry.labels = {}
                    log.info("model_removed", model=name)
            for c in configs:
                existing = self._models.get(c.name)
                if existing is None:
                    self._models[c.name] = ModelEntry(config=c)
                    log.info("model_added", model=c.name, base_path=c.base_path)
                else:
                    existing.config = c
                    existing.in_config = True
        self.poll_filesystem()
        self._wait_for_new_models(added, wait_timeout_s)
        self._apply_labels(configs)

    def _wait_for_new_models(self, names: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cv:

            def settled() -> bool:
                for n in names:
                    entry = self._models.get(n)
                    if entry is None:
                        continue
                    aspired = [v for v in entry.versions.values() if v.aspired]
                    if not (
                        any(v.state == State.AVAILABLE for v in aspired)
                        or all(v.state == State.END for v in aspired)
                    ):
                        return False
                return True

            while not settled():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cv.wait(min(remaining, 0.5))
            failed = [
                n
                for n in names
                if n in self._models
                and any(v.aspired for v in self._models[n].versions.values())
                and not any(v.state == State.AVAILABLE for v in self._models[n].versions.values())
            ]
        if failed:
            raise ServingError(
                "UNKNOWN", "Some models did not become available: {" + ", ".join(failed) + "}"
            )

    def _apply_labels(self, configs: list[ModelConfig]) -> None:
        with self._cv:
            for c in configs:
                entry = self._models[c.name]
                for version in c.labels.values():
                    v = entry.versions.get(version)
                    available = v is not None and v.state == State.AVAILABLE
                    if not available and not self._allow_unavailable_labels:
                        raise ServingError(
                            "FAILED_PRECONDITION",
                            f"Request to assign label to version {version} of model {c.name}, "
                            "which is not currently available for inference",
                        )
            for c in configs:
                self._models[c.name].labels = dict(c.labels)

    def poll_filesystem(self) -> None:
        """Scan every configured model's base path and update the aspired versions."""
        with self._cv:
            models = [(n, e.config) for n, e in self._models.items() if e.in_config]
        found: dict[str, list[int]] = {}
        for name, cfg in models:
            try:
                found[name] = version_dirs(d.name for d in os.scandir(cfg.base_path) if d.is_dir())
            except OSError as exc:
                log.warning(
                    "base_path_unreadable", model=name, base_path=cfg.base_path, error=str(exc)
                )
                found[name] = []
        with self._cv:
            for name, entry in self._models.items():
                if not entry.in_config:
                    aspired: frozenset[int] = frozenset()
                elif name in found:
                    aspired = aspired_versions(found[name], entry.config.policy)
                else:
                    continue  # added while we were scanning; the next poll sees it
                for v in aspired:
                    cur = entry.versions.get(v)
                    if cur is None or (cur.state == State.END and not cur.aspired):
                        entry.versions[v] = VersionEntry(
                            version=v, path=os.path.join(entry.config.base_path, str(v))
                        )
                    else:
                        cur.aspired = True
                for v, cur in entry.versions.items():
                    if v not in aspired:
                        cur.aspired = False
            self._kick()

    # --- reconcile -----------------------------------------------------------------------------
    def _kick(self) -> None:
        self._dirty.set()
        with self._cv:
            self._cv.notify_all()

    def _reconcile_loop(self) -> None:
        while not self._stopping:
            self._dirty.wait(timeout=1.0)
            self._dirty.clear()
            if self._stopping:
                return
            try:
                self._reconcile_once()
            except Exception:  # keep the loop alive; a bug here must not stop serving
                log.exception("reconcile_failed")

    def _reconcile_once(self) -> None:
        in_progress = (State.START, State.LOADING)
        with self._cv:
            busy = {
                name: sum(1 for v in e.versions.values() if v.state in in_progress)
                for name, e in self._models.items()
            }
            total = sum(busy.values())  # loads started or running, across all models
            for name, entry in self._models.items():
                snaps = [
                    Snapshot(v.version, v.state, v.aspired, v.failed)
                    for v in entry.versions.values()
                ]
                budget = self._max_loads - (total - busy[name])
                for action in next_actions(snaps, max_loads=budget):
                    v = entry.versions[action.version]
                    if action.kind == "load" and v.state == State.UNKNOWN:
                        v.state = State.START
                        total += 1
                        self._pool.submit(self._load, name, v)
                    elif action.kind == "unload" and v.state == State.AVAILABLE:
                        v.state = State.UNLOADING
                        log.info("version_unloading", model=name, version=v.version)
                        self._unload_pool.submit(self._unload, name, v)
            self._cv.notify_all()

    def _load(self, name: str, v: VersionEntry) -> None:
        attempts = 0
        with self._cv:
            v.state = State.LOADING
            self._cv.notify_all()
        log.info("version_loading", model=name, version=v.version, path=v.path)
        started = time.monotonic()
        while True:
            try:
                servable = self._warm_up(self._loader(v.path), v.path)
                break
            except Exception as exc:
                from tfserving.servable import load_error_code

                attempts += 1
                code, message = load_error_code(exc), " ".join(str(exc).split())[:1000]
                with self._cv:
                    still_aspired = v.aspired and not self._stopping
                if attempts > self._retries or not still_aspired:
                    with self._cv:
                        v.state, v.failed = State.END, True
                        v.error_code, v.error_message = code, message
                        self._cv.notify_all()
                    log.error(
                        "version_load_failed",
                        model=name,
                        version=v.version,
                        code=code,
                        error=message,
                        attempts=attempts,
                    )
                    self._kick()
                    return
                log.warning(
                    "version_load_retry",
                    model=name,
                    version=v.version,
                    attempt=attempts,
                    error=message,
                )
                time.sleep(self._retry_interval_s)
        with self._cv:
            v.servable, v.state, v.loaded_at = servable, State.AVAILABLE, time.time()
            v.error_code, v.error_message = "OK", ""
            self._cv.notify_all()
        log.info(
            "version_available",
            model=name,
            version=v.version,
            seconds=round(time.monotonic() - started, 3),
        )
        self._kick()
        if self._on_change:
            self._on_change()

    def set_warmup_recorder(self, record: Callable[[str, str, int, int], None]) -> None:
        """Where warmups report (model_path, status, latency µs, records): the metrics."""
        self._warmup_recorder = record

    def _warm_up(self, servable: Any, path: str) -> Any:
        """TF Serving warms a version up inside its load: a failed warmup is a failed load."""
        from tfserving.warmup import run_saved_model_warmup

        if self._warmup_iterations <= 0:
            return servable
        try:
            run_saved_model_warmup(
                servable,
                path,
                self._warmup_recorder,
                num_request_iterations=self._warmup_iterations,
            )
        except BaseException:
            if hasattr(servable, "close"):
                servable.close()
            raise
        return servable

    def _unload(self, name: str, v: VersionEntry) -> None:
        with self._cv:
            while v.refs > 0:  # in-flight requests on this version finish first
                self._cv.wait(1.0)
            if hasattr(v.servable, "close"):
                v.servable.close()
            v.servable = None
            v.state = State.END
            self._cv.notify_all()
        log.info("version_unloaded", model=name, version=v.version)
        self._kick()
        if self._on_change:
            self._on_change()

    # --- requests ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def acquire(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Hold one AVAILABLE version of ``name`` for the duration of a request."""
        with self._cv:
            entry = self._models.get(name)
            live = entry if entry is not None and entry.in_config else None
            available = (
                [v.version for v in live.versions.values() if v.state == State.AVAILABLE]
                if live
                else []
            )
            found = resolve_version(name, version, label, available, live.labels if live else {})
            if found.version is None:
                raise ServingError(found.code, found.message)
            chosen = found.version
            assert live is not None
            ve = live.versions[chosen]
            ve.refs += 1
            servable = ve.servable
        try:
            yield chosen, servable
        finally:
            with self._cv:
                ve.refs -= 1
                if ve.refs == 0:
                    self._cv.notify_all()

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Every version the manager has seen, END ones included (after an unload, and for a
        model no longer in the config), highest version first; or only ``version``. As
        ``GetModelStatusImpl`` (model_servers/get_model_status_impl.cc) answers from the
        ``ServableStateMonitor``, whose version map is ordered by ``std::greater``."""
        with self._cv:
            entry = self._models.get(name)
            seen = entry.versions if entry is not None else {}
            if version is not None and version not in seen:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
            if not seen:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            versions = sorted(seen.values(), key=lambda v: -v.version)
            if version is not None:
                versions = [seen[version]]
            return [
                VersionStatus(
                    v.version,
                    State.START if v.state == State.UNKNOWN else v.state,
                    v.error_code,
                    v.error_message,
                )
                for v in versions
            ]

    def models(self) -> dict[str, ModelEntry]:
        with self._cv:
            return dict(self._models)

    def stop(self) -> None:
        self._stopping = True
        self._kick()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._unload_pool.shutdown(wait=False, cancel_futures=True)
