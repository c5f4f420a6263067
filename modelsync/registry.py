"""What a registry shows of each version, read straight from the bucket (``modelsync list``):
who published it (its manifest's publisher), when, its description and tags — the manifest's,
or the operators' edits in ``_modelsync/annotations.json`` (``modelsync.annotations``).

The catalog already carries a manifest's publisher and notes for every marker it has read, so
with a master running this costs two reads (the catalog and the annotations) whatever the
bucket's size; a marker the catalog does not know (yet) is read itself.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from modelsync.annotations import AnnotationError, Annotations, Notes, notes, parse_annotations
from modelsync.catalog import (
    Catalog,
    CatalogError,
    annotations_object,
    catalog_object,
    parse_catalog,
)
from modelsync.layout import BucketListing, marker_object
from modelsync.manifest import Manifest, ManifestError, Publisher, parse_manifest
from modelsync.settings import StoreSettings
from modelsync.store import NotFound, RemoteStore

READERS = 8


@dataclass(frozen=True)
class RegistryEntry:
    publisher: Publisher | None
    published_at: float | None
    notes: Notes

    def lines(self) -> list[str]:
        out = []
        if self.publisher is not None:
            p = self.publisher
            who = f"{p.user}@{p.host}" if p.host else p.user or "?"
            tool = f" ({p.tool})" if p.tool else ""
            out.append(f"published by {who}{tool}{_at(self.published_at)}")
        if self.notes.description:
            out.append(f"description: {self.notes.description}")
        if self.notes.tags:
            out.append("tags: " + ", ".join(f"{k}={v}" for k, v in self.notes.tags.items()))
        if self.notes.edited_by:
            out.append(f"edited by {self.notes.edited_by}{_at(self.notes.edited_at)}")
        return out


def _at(t: float | None) -> str:
    if not t:
        return ""
    return " at " + _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _read_doc(store: RemoteStore, name: str) -> bytes | None:
    try:
        return store.read(name)
    except NotFound:
        return None


def read_registry(
    store: RemoteStore, settings: StoreSettings, listing: BucketListing
) -> dict[tuple[str, int], RegistryEntry]:
    """(model, version) -> its entry, for every version of ``listing`` with a marker."""
    catalog: Catalog | None = None
    raw = _read_doc(store, catalog_object(settings.prefix))
    if raw is not None:
        try:
            catalog = parse_catalog(raw)
        except CatalogError:
            catalog = None
    annotations = Annotations()
    raw = _read_doc(store, annotations_object(settings.prefix))
    if raw is not None:
        try:
            annotations = parse_annotations(raw)
        except AnnotationError:
            annotations = Annotations()
    known: dict[tuple[str, int], tuple[Publisher | None, str, Mapping[str, str]]] = {}
    todo: list[tuple[str, int, int]] = []
    for model, versions in listing.models.items():
        for v, rv in versions.items():
            if rv.marker_generation is None:
                continue
            cv = catalog.models.get(model, {}).get(v) if catalog is not None else None
            if (
                cv is not None
                and cv.marker == rv.marker_generation
                and (cv.publisher is not None or cv.manifest == "none")
            ):
                known[(model, v)] = (cv.publisher, cv.description, cv.tags)
            else:
                todo.append((model, v, rv.marker_generation))

    def read_marker(item: tuple[str, int, int]) -> tuple[tuple[str, int], Manifest | None]:
        model, v, generation = item
        name = marker_object(settings.prefix, model, v, settings.marker)
        try:
            return (model, v), parse_manifest(store.read(name, generation=generation))
        except (NotFound, ManifestError):
            return (model, v), None

    if todo:
        with ThreadPoolExecutor(min(READERS, len(todo))) as pool:
            for key, m in pool.map(read_marker, todo):
                known[key] = (None, "", {}) if m is None else (m.publisher, m.description, m.tags)
    out = {}
    for (model, v), (publisher, description, tags) in known.items():
        rv = listing.models[model][v]
        out[(model, v)] = RegistryEntry(
            publisher, rv.marker_updated, notes(description, tags, annotations.get(model, v))
        )
    return out
