"""What the master's request handlers share, built once per process: the SQLite registry, the
bucket, the catalog writer, the policy store, the metrics and the background jobs."""

from __future__ import annotations

import fcntl
import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import IO

from master import policy_ops
from master.catalog_writer import CatalogWriter
from master.cluster import node_counts
from master.containers.service import Containers
from master.db import Database
from master.docstore import DocStore
from master.index import FleetIndex
from master.jobs.service import Jobs
from master.merger import MergerProcess
from master.metrics import MasterMetrics
from master.rollout import RolloutController
from master.settings import MasterSettings
from master.telemetry import TelemetryStore
from master.watch import Generations, WatchHub
from modelsync.annotations import (
    AnnotationError,
    Annotations,
    dump_annotations,
    parse_annotations,
)
from modelsync.catalog import Catalog, CatalogVersion, annotations_object
from modelsync.layout import SettleTracker, incomplete_reason
from modelsync.log import get_logger
from modelsync.policy import Policy, dump_policy, parse_policy
from modelsync.store import GCSStore, RemoteStore, StoreError, list_bucket

log = get_logger("master")
WATCH_META = "watch_generations"
WATCH_SYNC_S = 0.2


class Unavailable(Exception):
    """The bucket could not be read or written; the message says what."""


class MasterState:
    def __init__(self, settings: MasterSettings, store: RemoteStore | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.db_path)
        self.store: RemoteStore = store or GCSStore(settings.store)
        self.watch = WatchHub(settings.watch_max)
        self.writer = CatalogWriter(
            self.store,
            settings.store,
            settings.settle_s,
            on_generation=lambda g: self.learn(Generations(catalog=g)),
            on_mismatch=self._mismatch,
        )
        self.annotations = DocStore(
            self.store,
            annotations_object(settings.store.prefix),
            parse_annotations,
            dump_annotations,
            Annotations,
            bucket=settings.store.bucket,
        )
        self._notes_cache: tuple[float, Annotations] | None = None
        self.policies = policy_ops.PolicyStore(
            self.store,
            settings.store.prefix,
            bucket=settings.store.bucket,
            on_generation=lambda g: self.learn(Generations(policy=g)),
        )
        self.metrics = MasterMetrics()
        self.index = FleetIndex()
        self.metrics.collect_fleet(self.node_counts)
        self.telemetry = TelemetryStore(
            self.db, settings.telemetry_retention_s, spool_only=settings.telemetry_process
        ).start()
        self.merger: MergerProcess | None = None
        self.rollouts = RolloutController(self, settings.rollout_s)
        self.jobs = Jobs(settings, self.db, self.store)
        self.containers = Containers(
            settings,
            self.db,
            self.store,
            self._container_inputs,
            reject=self._reject_container_version,
        )
        self._stop = threading.Event()
        self._wake = threading.Event()  # refresh the catalog now (a version was uploaded)
        self._lock_fh: IO[str] | None = None
        self._policy_cache: tuple[float, Policy] | None = None
        self.policy_problem: str | None = None
        if settings.workers > 1 and settings.watch_max > 0:
            threading.Thread(target=self._follow_other_workers, name="watch", daemon=True).start()

    # --- the watch ------------------------------------------------------------------------------
    def learn(self, gens: Generations) -> None:
        """A generation of the catalog or policy met here: wake the watches held in this
        process, and (several workers) tell the others through SQLite."""
        if self.watch.learn(gens.catalog, gens.policy) and self.settings.workers > 1:
            known = self.watch.known
            self.db.set_meta(WATCH_META, json.dumps([known.catalog, known.policy]))

    def _follow_other_workers(self) -> None:
        """With several workers, what another worker learned reaches this one's watches
        within ``WATCH_SYNC_S`` (one read of a SQLite row)."""
        while not self._stop.wait(WATCH_SYNC_S):
            try:
                raw = self.db.get_meta(WATCH_META)
                if raw:
                    catalog, policy = json.loads(raw)
                    self.watch.learn(catalog, policy)
            except Exception:  # the next round tries again
                log.exception("watch_sync_failed")

    # --- background jobs (one process of the master runs them) ---------------------------------
    def start_background(self) -> bool:
        """Run the catalog writer and retention here unless another process already does."""
        lock_path = Path(str(self.settings.db_path) + ".lock")
        fh = open(lock_path, "a+")  # noqa: SIM115 - held for the life of the process
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._lock_fh = fh
        if self.settings.telemetry_process:  # the telemetry's drain and compaction
            self.merger = MergerProcess(
                self.settings.db_path, self.settings.telemetry_retention_s
            ).start()
        threading.Thread(target=self._loop, name="catalog", daemon=True).start()
        self.rollouts.start()
        self.jobs.start(self._stop)
        self.containers.start(self._stop)
        return True

    @property
    def runs_background(self) -> bool:
        return self._lock_fh is not None

    def _loop(self) -> None:
        last_trim = 0.0
        while not self._stop.is_set():
            self.refresh_catalog()
            if time.time() - last_trim > 60:
                last_trim = time.time()
                try:
                    self.db.trim_events(
                        self.settings.events_max_rows, time.time() - self.settings.events_max_age_s
                    )
                    self.db.forget_nodes(time.time() - self.settings.node_forget_s)
                    if self.merger is None:  # else the telemetry process compacts
                        self.telemetry.compact(time.time())
                except Exception:
                    log.exception("retention_failed")
            self._wake.wait(self.settings.catalog_s)
            self._wake.clear()

    def node_counts(self, now: float) -> dict[str, int]:
        """Nodes by state (the metrics' fleet collector reads it at scrape time)."""
        with self.index.fleet(self.db, now) as fleet:
            return node_counts(fleet)

    def refresh_catalog(self) -> None:
        try:
            result = self.writer.refresh()
        except StoreError as exc:
            self.metrics.catalog_refreshes.labels("error").inc()
            log.warning("catalog_refresh_failed", error=str(exc))
            return
        self.metrics.catalog_refreshes.labels("ok").inc()
        self.metrics.catalog_seconds.set(result.seconds)

    def _mismatch(self, model: str, version: int, cv: CatalogVersion) -> None:
        """A version's files no longer match its manifest: no node will install it, so the
        master says so, once per version and content (``CatalogWriter``)."""
        self.db.add_event(
            "master",
            "manifest_mismatch",
            model=model,
            detail={"version": version, "problem": cv.problem, "fingerprint": cv.fingerprint},
        )
        log.warning("manifest_mismatch", model=model, version=version, problem=cv.problem)

    def catalog_changed(self) -> None:
        """Something was published through the master: list the bucket now (in the process
        that writes the catalog; the others read it from the bucket)."""
        self._wake.set()
        self.containers.wake()

    def _container_inputs(self) -> tuple[Catalog | None, Policy]:
        return self.writer.current, self.policy()

    def _reject_container_version(self, model: str, version: int, why: str) -> None:
        """A container version that never turned ready: rejected in the policy (the operator
        clears it with ``DELETE /v1/models/<m>/rejected/<v>``), audited as the master's."""

        def change(p: Policy) -> Policy:
            mp = p.for_model(model)
            return p.with_model(model, replace(mp, rejected=mp.rejected | {version}))

        policy, generation, written = self.policies.update(change)
        if written:
            self.policy_written(policy, generation)
        self.db.add_event(
            "audit",
            "container_version_rolled_back",
            model=model,
            detail={"version": version, "why": why, "actor": "master", "generation": generation},
        )

    def stop(self) -> None:
        self._stop.set()
        self.watch.close()
        self._wake.set()
        self.telemetry.stop()
        if self.merger is not None:
            self.merger.stop()
        self.rollouts.stop()

    # --- reads ---------------------------------------------------------------------------------
    def catalog(self) -> Catalog | None:
        """The current catalog: this process's own, or (in a process that does not write it)
        the one in the bucket."""
        if self.writer.current is None or not self.runs_background:
            try:
                self.writer.reload()
            except StoreError as exc:
                raise Unavailable(f"the bucket cannot be read: {exc}") from None
        return self.writer.current

    def policy(self, max_age_s: float = 1.0) -> Policy:
        """The policy in the bucket; while that one is malformed, the last good one (kept in
        SQLite across restarts) with ``policy_problem`` saying why."""
        cached = self._policy_cache
        if cached is not None and time.monotonic() - cached[0] < max_age_s:
            return cached[1]
        try:
            policy, generation = self.policies.read()
            self._remember(policy, generation)
        except policy_ops.MalformedPolicy as exc:
            self.policy_problem = str(exc)
            saved = self.db.get_meta("last_good_policy")
            policy = parse_policy(saved) if saved else Policy()
        except StoreError as exc:
            raise Unavailable(f"the policy cannot be read: {exc}") from None
        self._policy_cache = (time.monotonic(), policy)
        return policy

    def notes(self, max_age_s: float = 2.0) -> Annotations:
        """The operators' edits of versions' descriptions and tags, from the bucket (cached for
        ``max_age_s``; an unreadable object reads as none, with a warning)."""
        cached = self._notes_cache
        if cached is not None and time.monotonic() - cached[0] < max_age_s:
            return cached[1]
        try:
            doc, _generation = self.annotations.read()
        except AnnotationError as exc:
            log.warning("annotations_malformed", error=str(exc))
            doc = Annotations()
        except StoreError as exc:
            raise Unavailable(f"the annotations cannot be read: {exc}") from None
        self._notes_cache = (time.monotonic(), doc)
        return doc

    def notes_written(self) -> None:
        self._notes_cache = None

    def problems(self) -> list[str]:
        """What every read should tell besides its answer."""
        return [self.policy_problem] if self.policy_problem else []

    def policy_written(self, policy: Policy | None = None, generation: int = 0) -> None:
        """Forget the cached policy: the next read sees the write (and remember what was
        written as the last good policy)."""
        self._policy_cache = None
        if policy is not None:
            self._remember(policy, generation)

    def _remember(self, policy: Policy, generation: int) -> None:
        self.policy_problem = None
        if self.db.get_meta("last_good_policy_generation") != str(generation):
            self.db.set_meta("last_good_policy", dump_policy(policy).decode())
            self.db.set_meta("last_good_policy_generation", str(generation))

    def complete_versions(self, model: str) -> list[int]:
        """Complete versions of ``model``: the catalog's, checked against a fresh listing of
        the model when the catalog does not know a version yet."""
        try:
            listing = list_bucket(self.store, self.settings.store, model)
        except StoreError as exc:
            raise Unavailable(f"the bucket cannot be listed: {exc}") from None
        catalog = self.writer.current
        known = set(catalog.complete_versions(model)) if catalog else set()
        tracker = SettleTracker.markers_only()  # what the catalog does not know yet: markers
        now = time.time()
        fresh = {
            v
            for v, rv in listing.models.get(model, {}).items()
            if (v in known and rv.problem() is None) or incomplete_reason(rv, tracker, now) is None
        }
        return sorted(fresh)
