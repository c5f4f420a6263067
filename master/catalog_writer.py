"""The catalog writer: one listing of the bucket per ``catalog_s`` for the whole cluster.

The body of ``_modelsync/catalog.json`` is rewritten only when something changed; otherwise only
its ``listed_at`` metadata is patched (same generation), so nodes' idle polls stay two metadata
reads. A listing that fails leaves the last catalog in place: nodes fall back on their own
listing when it ages past their ``catalog_max_age_s``.

Each version's ``manifest`` state needs its marker's body: every marker is read once, pinned to
its listed generation, and its parsed manifest cached by (object name, generation); an empty
marker is known from the listing's size and never read, and a state the catalog in place
already records for the same marker generation and fingerprint is kept without a read (a
restarted master reads no marker again). A steady-state refresh reads nothing but the listing.

``refresh_version`` puts one version into the catalog at once (``modelsync publish`` tells the
master after writing ``_READY``): one listing of that version, its marker read once, and the
body rewritten with ``if_generation_match`` — without waiting for the next ``catalog_s`` and
without listing the whole bucket. It keeps the catalog's ``listed_at``: only a whole listing
says the catalog is fresh. ``on_generation`` hears every generation of the catalog the writer
meets (the watch wakes the nodes with it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from modelsync.catalog import (
    LISTED_AT,
    Catalog,
    CatalogVersion,
    MarkerInfo,
    build_catalog,
    catalog_object,
    dump_catalog,
    parse_catalog,
)
from modelsync.layout import (
    BucketListing,
    ObjectInfo,
    SettleTracker,
    marker_object,
    parse_listing,
    prefix_dir,
    version_prefix,
)
from modelsync.log import get_logger
from modelsync.manifest import (
    MAX_MARKER_BYTES,
    Manifest,
    ManifestError,
    manifest_state,
    parse_manifest,
)
from modelsync.settings import StoreSettings
from modelsync.store import NotFound, PreconditionFailed, RemoteStore, StoreError

MARKER_READERS = 8
Parsed = Manifest | ManifestError | None

log = get_logger("master")


@dataclass(frozen=True)
class VersionRefresh:
    """What ``refresh_version`` did: the version's entry (None: not in the bucket), whether
    the body was rewritten, and the catalog's generation after it."""

    model: str
    version: int
    complete: bool
    written: bool
    generation: int | None
    reason: str | None = None  # why the version is not complete


@dataclass
class RefreshResult:
    written: bool
    patched: bool
    seconds: float
    models: int
    versions: int
    calls: int


class CatalogWriter:
    def __init__(
        self,
        store: RemoteStore,
        settings: StoreSettings,
        settle_s: float,
        clock: Callable[[], float] = time.time,
        on_generation: Callable[[int], None] | None = None,
        on_mismatch: Callable[[str, int, CatalogVersion], None] | None = None,
    ) -> None:
        self.store = store
        self.on_generation = on_generation
        self._lock = threading.RLock()  # the catalog loop and the publishers' notifications
        self.settings = settings
        self.name = catalog_object(settings.prefix)
        self.tracker = SettleTracker(settle_s)
        self.clock = clock
        self.on_mismatch = on_mismatch
        self.current: Catalog | None = None
        self.generation: int | None = None
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        self._manifests: dict[tuple[str, int], Parsed] = {}  # (marker name, generation)

    def reload(self) -> None:
        """Read the catalog in the bucket (for a process that does not write it), when its
        generation changed."""
        with self._lock:
            info = self.store.stat(self.name)
            if info is not None and info.generation != self.generation:
                body = self.store.read(info.name, generation=info.generation)
                self.current = parse_catalog(body)
                self._seen(info.generation)

    def _seen(self, generation: int | None) -> None:
        self.generation = generation
        if generation is not None and self.on_generation is not None:
            self.on_generation(generation)

    def refresh(self) -> RefreshResult:
        """List the bucket and bring the catalog up to date. A StoreError is recorded in
        ``last_error`` and raised; the last catalog stays in place."""
        with self._lock:
            try:
                return self._refresh()
            except StoreError as exc:
                self.last_error = str(exc)
                raise

    def refresh_version(self, model: str, version: int) -> VersionRefresh:
        """Put ``model``/``version`` into the catalog now (see the module's docstring). With
        no catalog in the bucket yet, this is a whole refresh."""
        with self._lock:
            for _attempt in range(4):
                info = self.store.stat(self.name)
                if info is None:
                    self._refresh()
                    return self._version_result(model, version, written=True)
                if self.current is None or info.generation != self.generation:
                    body = self.store.read(self.name, generation=info.generation)
                    self.current = parse_catalog(body)
                    self._seen(info.generation)
                updated = self._with_version(self.current, model, version)
                if updated.same_content(self.current):
                    return self._version_result(model, version, written=False)
                stamp = {LISTED_AT: (info.metadata or {}).get(LISTED_AT, f"{self.clock():.3f}")}
                try:
                    new = self.store.write(
                        self.name,
                        dump_catalog(updated),
                        if_generation_match=info.generation,
                        content_type="application/json",
                        metadata=stamp,
                    )
                except PreconditionFailed:
                    continue  # the catalog loop (or another master) wrote: apply it again
                self.current = updated
                self._seen(new.generation)
                log.info(
                    "catalog_version_written",
                    model=model,
                    version=version,
                    generation=new.generation,
                )
                return self._version_result(model, version, written=True)
            raise StoreError(f"{self.name}: changed concurrently 4 times; try again")

    def _with_version(self, base: Catalog, model: str, version: int) -> Catalog:
        prefix, marker = self.settings.prefix, self.settings.marker
        objects = self.store.list_objects(version_prefix(prefix, model, version))
        listing = parse_listing(objects, prefix, marker)
        markers = [o for o in objects if o.name.endswith("/" + marker)]
        states = self._manifest_states(listing, markers, prune=False)
        one = build_catalog(listing, SettleTracker.markers_only(), self.clock(), prefix, states)
        models = {m: dict(vs) for m, vs in base.models.items()}
        entry = one.models.get(model, {}).get(version)
        if entry is None:
            models.get(model, {}).pop(version, None)
        else:
            models.setdefault(model, {})[version] = entry
        return Catalog(
            models={m: vs for m, vs in models.items() if vs},
            skipped=base.skipped,
            generated_at=self.clock(),
            prefix=prefix,
        )

    def _version_result(self, model: str, version: int, written: bool) -> VersionRefresh:
        entry = (self.current.models if self.current else {}).get(model, {}).get(version)
        reason = None
        if entry is None:
            reason = "not in the bucket"
        elif not entry.complete:
            reason = entry.problem or "incomplete (no marker, or its manifest does not match)"
        return VersionRefresh(
            model,
            version,
            entry is not None and entry.complete,
            written,
            self.generation,
            reason,
        )

    def _refresh(self) -> RefreshResult:
        started = time.monotonic()
        before = sum(self.store.calls.values())
        prefix, marker = self.settings.prefix, self.settings.marker
        objects = self.store.list_objects(prefix_dir(prefix))
        listing = parse_listing(objects, prefix, marker)
        info = self.store.stat(self.name)
        if info is not None and (self.current is None or info.generation != self.generation):
            try:  # another writer (or our previous life) wrote it: compare with what is there
                self.current = parse_catalog(self.store.read(self.name, generation=info.generation))
                self._seen(info.generation)
            except Exception:  # unreadable (malformed, or the read failed): rewrite it
                self.current, self.generation = None, info.generation
        markers = [o for o in objects if o.name.endswith("/" + marker)]
        states = self._manifest_states(listing, markers)
        now = self.clock()
        catalog = build_catalog(listing, self.tracker, now, prefix, states)
        self._report_mismatches(catalog, self.current)
        written = patched = False
        stamp = {LISTED_AT: f"{now:.3f}"}
        if info is not None and self.current is not None and catalog.same_content(self.current):
            self.store.patch_metadata(self.name, stamp)
            patched = True
        else:
            try:
                new = self.store.write(
                    self.name,
                    dump_catalog(catalog),
                    if_generation_match=info.generation if info else 0,
                    content_type="application/json",
                    metadata=stamp,
                )
                self.current, written = catalog, True
                self._seen(new.generation)
                log.info("catalog_written", models=len(catalog.models), generation=new.generation)
            except PreconditionFailed:
                log.warning("catalog_write_raced")  # another master wrote; next round re-reads
        self.current = self.current or catalog
        self.last_ok_at = now
        self.last_error = None
        return RefreshResult(
            written,
            patched,
            round(time.monotonic() - started, 3),
            len(catalog.models),
            sum(len(v) for v in catalog.models.values()),
            sum(self.store.calls.values()) - before,
        )

    def _report_mismatches(self, catalog: Catalog, before: Catalog | None) -> None:
        """Every version that is newly ``mismatch`` — or whose content changed while it stays
        one — is reported once (the catalog in place remembers, across restarts too)."""
        if self.on_mismatch is None:
            return
        for model, versions in catalog.models.items():
            for v, cv in versions.items():
                prev = before.models.get(model, {}).get(v) if before is not None else None
                seen = prev is not None and (prev.manifest, prev.fingerprint, prev.marker) == (
                    "mismatch",
                    cv.fingerprint,
                    cv.marker,
                )
                if cv.manifest == "mismatch" and not seen:
                    self.on_mismatch(model, v, cv)

    def _manifest_states(
        self, listing: BucketListing, markers: list[ObjectInfo], prune: bool = True
    ) -> dict[tuple[str, int], MarkerInfo]:
        """(model, version) -> its manifest state (and manifest). A marker is read only when
        neither the cache (by name and generation) nor the catalog in place (same marker
        generation, same fingerprint) knows it; with ``prune`` (a whole listing) the cache
        forgets markers no longer listed."""
        sizes = {(o.name, o.generation): o.size for o in markers}
        known = self.current.models if self.current is not None else {}
        states: dict[tuple[str, int], MarkerInfo] = {}
        wanted: dict[tuple[str, int], tuple[str, int]] = {}
        todo: list[tuple[str, int]] = []
        for model, versions in listing.models.items():
            for v, rv in versions.items():
                if rv.marker_generation is None:
                    continue
                key = (
                    marker_object(self.settings.prefix, model, v, self.settings.marker),
                    rv.marker_generation,
                )
                wanted[(model, v)] = key
                prev = known.get(model, {}).get(v)
                if (
                    key not in self._manifests
                    and prev is not None
                    and (prev.marker, prev.fingerprint) == (key[1], rv.fingerprint)
                    # a catalog from before publishers were carried: read such a marker once
                    and (prev.manifest == "none" or prev.publisher is not None)
                ):
                    states[(model, v)] = MarkerInfo.of(prev)  # still holds
                elif key not in self._manifests:
                    todo.append(key)
        cache = {key: self._manifests[key] for key in wanted.values() if key in self._manifests}

        def read(key: tuple[str, int]) -> tuple[tuple[str, int], Parsed, bool]:
            size = sizes.get(key)
            if size == 0:
                return key, None, True
            if size is not None and size > MAX_MARKER_BYTES:
                return (
                    key,
                    ManifestError(f"marker of {size} bytes is too large to be a manifest"),
                    True,
                )
            try:
                data = self.store.read(key[0], generation=key[1])
            except NotFound:  # replaced since the listing: the next refresh sees the new one
                return key, None, False
            try:
                return key, parse_manifest(data), True
            except ManifestError as exc:
                return key, exc, True

        if todo:
            with ThreadPoolExecutor(min(MARKER_READERS, len(todo))) as pool:
                for key, parsed, keep in pool.map(read, sorted(set(todo))):
                    if keep:
                        cache[key] = parsed
        self._manifests = cache if prune else {**self._manifests, **cache}
        for mv, key in wanted.items():
            if mv not in states:
                rv = listing.models[mv[0]][mv[1]]
                parsed = cache.get(key)
                state, problem = manifest_state(parsed, rv.files)
                manifest = parsed if isinstance(parsed, Manifest) else None
                states[mv] = MarkerInfo(state, problem, manifest)
        return states
