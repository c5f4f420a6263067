"""What a node knows of the bucket: the catalog (or its own listing) and the policy.

An idle poll is two metadata reads — the catalog's and the policy's — whatever the bucket's
size; a body is downloaded only when its generation changed. When the catalog is missing,
unreadable or older than ``catalog_max_age_s`` (the master is down), the node lists the bucket
itself (fields projected) and applies the completeness rules, until the catalog is fresh again.
The last good policy and catalog are kept on local disk: a malformed policy in the bucket is an
event and the last good copy stays in force. The view logs nothing itself: what it notices it
returns as typed events (:class:`modelsync.events.Event`, each with its level), and the puller
records and logs them once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modelsync.catalog import (
    Catalog,
    CatalogError,
    catalog_object,
    dump_catalog,
    listed_at,
    parse_catalog,
    policy_object,
)
from modelsync.events import Event
from modelsync.layout import ObjectInfo, RemoteVersion, SettleTracker, complete_versions
from modelsync.local import LocalLayout, LocalStateError
from modelsync.policy import Policy, PolicyError, parse_policy
from modelsync.settings import StoreSettings
from modelsync.store import RemoteStore, list_bucket
from modelsync.watch import Generations


@dataclass(frozen=True)
class VersionRef:
    """A complete version in the bucket; ``listing`` is set when the node listed it itself."""

    model: str
    version: int
    fingerprint: str
    bytes: int
    objects: int
    listing: RemoteVersion | None = None
    marker: int | None = None  # the marker's generation (its manifest is part of the version)

    @property
    def failure_key(self) -> tuple[str, int, str, int | None]:
        """What a failed install is remembered by: a new content or a new marker retries it."""
        return (self.model, self.version, self.fingerprint, self.marker)


@dataclass
class RemoteState:
    source: str  # "catalog" | "listing"
    versions: dict[str, dict[int, VersionRef]]
    policy: Policy
    skipped: list[tuple[str, str]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    calls: int = 0


class BucketView:
    def __init__(
        self,
        store: RemoteStore,
        settings: StoreSettings,
        layout: LocalLayout,
        *,
        catalog_max_age_s: float = 120.0,
        settle_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.layout = layout
        self.catalog_max_age_s = catalog_max_age_s
        self.clock = clock
        self.tracker = SettleTracker(settle_s)
        self.source = "none"
        self._events: list[Event] = []  # noticed outside a poll (at start): take_events()
        self._policy, self._policy_gen = self._load_local_policy()
        self._catalog: Catalog | None = None
        self._catalog_gen: int | None = None
        self._bad_policy_gen: int | None = None
        self.seen = Generations()  # what the last poll saw (the watch tells the master)

    def _load_local_policy(self) -> tuple[Policy, int | None]:
        try:
            saved = self.layout.read_policy()
        except LocalStateError as exc:
            self._events.append(Event.of("local_policy_unreadable", "warning", error=str(exc)))
            saved = None
        return (Policy(), None) if saved is None else (saved.policy, saved.generation)

    def take_events(self) -> list[Event]:
        """What the view noticed outside a poll (at start: an unreadable local copy of the
        policy), once."""
        events, self._events = self._events, []
        return events

    # --- polling --------------------------------------------------------------------------------
    def poll(self) -> RemoteState:
        before = sum(self.store.calls.values())
        events: list[Event] = []
        cat_info = self.store.stat(catalog_object(self.settings.prefix))
        pol_info = self.store.stat(policy_object(self.settings.prefix))
        self._refresh_policy(pol_info, events)
        seen = Generations(
            cat_info.generation if cat_info else 0, pol_info.generation if pol_info else 0
        )
        now = self.clock()
        fresh = False
        if cat_info is not None:
            stamp = listed_at(cat_info.metadata)
            fresh = stamp is not None and now - stamp <= self.catalog_max_age_s
        state: RemoteState | None = None
        if fresh and cat_info is not None:
            state = self._from_catalog(cat_info.generation, events)
        if state is None:
            if self.source != "listing":
                events.append(
                    Event.of(
                        "catalog_fallback",
                        "warning",
                        reason="missing" if cat_info is None else "stale or unreadable",
                    )
                )
            self.source = "listing"
            state = self._from_listing(now)
        elif self.source != "catalog":
            if self.source == "listing":
                events.append(Event.of("catalog_fresh_again"))
            self.source = "catalog"
        state.events = events + state.events
        state.calls = sum(self.store.calls.values()) - before
        self.seen = seen
        return state

    def _refresh_policy(self, info: ObjectInfo | None, events: list[Event]) -> None:
        if info is None:
            if self._policy_gen is not None:
                events.append(Event.of("policy_deleted"))
            if self._policy_gen is not None or self._policy != Policy():
                self._policy, self._policy_gen = Policy(), None
                self.layout.write_policy(self._policy, None)
            return
        if info.generation in (self._policy_gen, self._bad_policy_gen):
            return
        body = self.store.read(info.name, generation=info.generation)
        try:
            policy = parse_policy(body)
        except PolicyError as exc:
            self._bad_policy_gen = info.generation
            events.append(
                Event.of("policy_malformed", "error", generation=info.generation, error=str(exc))
            )
            return
        self._policy, self._policy_gen = policy, info.generation
        self.layout.write_policy(policy, info.generation)
        events.append(Event.of("policy_changed", generation=info.generation))

    def _from_catalog(self, generation: int, events: list[Event]) -> RemoteState | None:
        if generation != self._catalog_gen or self._catalog is None:
            body = self.store.read(catalog_object(self.settings.prefix), generation=generation)
            try:
                self._catalog = parse_catalog(body)
            except CatalogError as exc:
                events.append(Event.of("catalog_malformed", "error", error=str(exc)))
                self._catalog = None
                return None
            self._catalog_gen = generation
            self.layout.write_catalog(dump_catalog(self._catalog))
        versions = {
            m: {
                v: VersionRef(m, v, cv.fingerprint, cv.bytes, cv.objects, marker=cv.marker)
                for v, cv in vs.items()
                if cv.complete and cv.kind == "savedmodel"  # containers run as Swarm services
            }
            for m, vs in self._catalog.models.items()
        }
        return RemoteState(
            "catalog",
            {m: vs for m, vs in versions.items() if vs},
            self._policy,
            list(self._catalog.skipped),
        )

    def _from_listing(self, now: float) -> RemoteState:
        listing = list_bucket(self.store, self.settings)
        versions = {
            model: {
                v: VersionRef(
                    model, v, rv.fingerprint, rv.bytes, len(rv.files), rv, rv.marker_generation
                )
                for v, rv in vs.items()
                if rv.kind == "savedmodel"  # containers run as Swarm services
            }
            for model, vs in complete_versions(listing, self.tracker, now).items()
        }
        return RemoteState(
            "listing",
            {m: vs for m, vs in versions.items() if vs},
            self._policy,
            [(s.path, s.reason) for s in listing.skipped],
        )
