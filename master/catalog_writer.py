"""The catalog writer: one listing of the bucket per ``catalog_s`` for the whole cluster.

The body of ``_modelsync/catalog.json`` is rewritten only when something changed; otherwise only
its ``listed_at`` metadata is patched (same generation), so nodes' idle polls stay two metadata
reads. A listing that fails leaves the last catalog in place: nodes fall back on their own
listing when it ages past their ``catalog_max_age_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from modelsync.catalog import (
    LISTED_AT,
    Catalog,
    build_catalog,
    catalog_object,
    dump_catalog,
    parse_catalog,
)
from modelsync.layout import SettleTracker
from modelsync.log import get_logger
from modelsync.settings import StoreSettings
from modelsync.store import PreconditionFailed, RemoteStore, StoreError, list_bucket

log = get_logger("master")


@dataclass
class RefreshResult:
    written: bool
    patched: bool
    seconds: float
    models: int
    versions: int
    calls: int


class CatalogWriter:
    def __init__(self, store: RemoteStore, settings: StoreSettings, settle_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.name = catalog_object(settings.prefix)
        self.tracker = SettleTracker(settle_s)
        self.clock = clock
        self.current: Catalog | None = None
        self.generation: int | None = None
        self.last_ok_at: float | None = None
        self.last_error: str | None = None

    def reload(self) -> None:
        """Read the catalog in the bucket (for a process that does not write it), when its
        generation changed."""
        info = self.store.stat(self.name)
        if info is not None and info.generation != self.generation:
            self.current = parse_catalog(self.store.read(info.name, generation=info.generation))
            self.generation = info.generation

    def refresh(self) -> RefreshResult:
        """List the bucket and bring the catalog up to date. A StoreError is recorded in
        ``last_error`` and raised; the last catalog stays in place."""
        try:
            return self._refresh()
        except StoreError as exc:
            self.last_error = str(exc)
            raise

    def _refresh(self) -> RefreshResult:
        started = time.monotonic()
        before = sum(self.store.calls.values())
        listing = list_bucket(self.store, self.settings)
        now = self.clock()
        catalog = build_catalog(listing, self.tracker, now, self.settings.prefix)
        info = self.store.stat(self.name)
        if info is not None and (self.current is None or info.generation != self.generation):
            try:  # another writer (or our previous life) wrote it: compare with what is there
                self.current = parse_catalog(self.store.read(self.name,
                                                             generation=info.generation))
                self.generation = info.generation
            except Exception:  # unreadable (malformed, or the read failed): rewrite it
                self.current, self.generation = None, info.generation
        written = patched = False
        stamp = {LISTED_AT: f"{now:.3f}"}
        if info is not None and self.current is not None and catalog.same_content(self.current):
            self.store.patch_metadata(self.name, stamp)
            patched = True
        else:
            try:
                new = self.store.write(self.name, dump_catalog(catalog),
                                       if_generation_match=info.generation if info else 0,
                                       content_type="application/json", metadata=stamp)
                self.current, self.generation, written = catalog, new.generation, True
                log.info("catalog_written", models=len(catalog.models),
                         generation=new.generation)
            except PreconditionFailed:
                log.warning("catalog_write_raced")  # another master wrote; next round re-reads
        self.current = self.current or catalog
        self.last_ok_at = now
        self.last_error = None
        return RefreshResult(written, patched, round(time.monotonic() - started, 3),
                             len(catalog.models),
                             sum(len(v) for v in catalog.models.values()),
                             sum(self.store.calls.values()) - before)
