"""The catalog: what the bucket holds, listed once per cluster (pure: no I/O).

``PREFIX/_modelsync/catalog.json``::

    {"schema": 1, "prefix": "models", "generated_at": 1795300000.0,
     "models": {"ranker": {"41": {"complete": true, "bytes": 1234, "objects": 5,
                                  "fingerprint": "…", "manifest": "verified"},
                           "42": {…, "kind": "container"}}},
     "skipped": [{"path": "models/bad name/", "reason": "…"}]}

Its freshness is the custom metadata field ``listed_at`` (unix seconds), patched on every
refresh without rewriting the body, so a node's idle poll is one metadata read.

``manifest`` says whether the version's listing matches the manifest in its marker
(``modelsync.manifest``): ``verified``, ``mismatch`` (with ``problem``: what differs, or why the
manifest is malformed) or ``none`` (no marker, or a marker without a manifest; also what a
catalog written before manifests means). ``marker`` is the marker's generation (absent: none),
so a restarted catalog writer knows which states still hold without reading the markers again.
A manifest's ``publisher``, ``description`` and ``tags`` are carried along (informational, for
the master's views and ``modelsync list``: nodes do not read them). ``kind`` is absent for a
SavedModel and ``"container"`` for a container model's version (its one object is a descriptor,
``modelsync.container``): nodes never install one; the master runs it as a Swarm service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

from modelsync.layout import (
    KINDS,
    RESERVED_DIR,
    BucketListing,
    SettleTracker,
    incomplete_reason,
    is_model_name,
    join,
    parse_version,
)
from modelsync.manifest import (
    Manifest,
    ManifestError,
    ManifestState,
    Publisher,
    check_notes,
)

PUBLISHER = ("user", "host", "tool")

SCHEMA = 1
CATALOG_NAME = "catalog.json"
POLICY_NAME = "policy.json"
ANNOTATIONS_NAME = "annotations.json"
LISTED_AT = "listed_at"


class CatalogError(ValueError):
    pass


def catalog_object(prefix: str) -> str:
    return join(prefix, RESERVED_DIR, CATALOG_NAME)


def policy_object(prefix: str) -> str:
    return join(prefix, RESERVED_DIR, POLICY_NAME)


def annotations_object(prefix: str) -> str:
    return join(prefix, RESERVED_DIR, ANNOTATIONS_NAME)


@dataclass(frozen=True)
class CatalogVersion:
    complete: bool
    bytes: int
    objects: int
    fingerprint: str
    manifest: ManifestState = "none"
    problem: str | None = None
    marker: int | None = None  # the marker's generation
    published_at: float | None = None  # when the marker was written (the version published)
    publisher: Publisher | None = None  # who published it, from its manifest
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    kind: str = "savedmodel"  # or "container" (layout.KINDS): nodes install savedmodels only


@dataclass(frozen=True)
class MarkerInfo:
    """What the catalog writer learned from a version's marker."""

    state: ManifestState = "none"
    problem: str | None = None
    manifest: Manifest | None = None

    @classmethod
    def of(cls, version: CatalogVersion) -> MarkerInfo:
        """What a catalog entry already records (publisher and notes as a manifest)."""
        manifest = None
        if version.publisher is not None:
            manifest = Manifest((), version.publisher, 0.0, version.description, version.tags)
        return cls(version.manifest, version.problem, manifest)


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, Mapping[int, CatalogVersion]] = field(default_factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()
    generated_at: float = 0.0
    prefix: str = ""

    def complete_versions(self, model: str) -> list[int]:
        return sorted(v for v, cv in self.models.get(model, {}).items() if cv.complete)

    def same_content(self, other: Catalog) -> bool:
        return self.models == other.models and self.skipped == other.skipped


def build_catalog(
    listing: BucketListing,
    tracker: SettleTracker,
    now: float,
    prefix: str,
    manifests: Mapping[tuple[str, int], MarkerInfo] | None = None,
) -> Catalog:
    """``manifests``: (model, version) -> its manifest state and problem
    (``modelsync.manifest.manifest_state``) and the manifest read; absent: none."""
    models: dict[str, dict[int, CatalogVersion]] = {}
    for model, versions in sorted(listing.models.items()):
        models[model] = {}
        for v, rv in sorted(versions.items()):
            info = (manifests or {}).get((model, v), MarkerInfo())
            m = info.manifest
            models[model][v] = CatalogVersion(
                complete=incomplete_reason(rv, tracker, now, info.state) is None,
                bytes=rv.bytes,
                objects=len(rv.files),
                fingerprint=rv.fingerprint,
                manifest=info.state,
                problem=info.problem,
                marker=rv.marker_generation,
                published_at=rv.marker_updated,
                publisher=m.publisher if m is not None else None,
                description=m.description if m is not None else "",
                tags=dict(m.tags) if m is not None else {},
                kind=rv.kind,
            )
    tracker.forget_missing(listing)
    return Catalog(
        models=models,
        skipped=tuple((s.path, s.reason) for s in listing.skipped),
        generated_at=now,
        prefix=prefix,
    )


def _version_doc(cv: CatalogVersion) -> dict[str, object]:
    doc: dict[str, object] = {
        "complete": cv.complete,
        "bytes": cv.bytes,
        "objects": cv.objects,
        "fingerprint": cv.fingerprint,
        "manifest": cv.manifest,
    }
    if cv.problem is not None:
        doc["problem"] = cv.problem
    if cv.marker is not None:
        doc["marker"] = cv.marker
    if cv.published_at is not None:
        doc["published_at"] = round(cv.published_at, 3)
    if cv.publisher is not None:
        doc["publisher"] = vars(cv.publisher)
    if cv.description:
        doc["description"] = cv.description
    if cv.tags:
        doc["tags"] = dict(cv.tags)
    if cv.kind != "savedmodel":  # absent: a savedmodel (catalogs from before container models)
        doc["kind"] = cv.kind
    return doc


def dump_catalog(catalog: Catalog) -> bytes:
    doc = {
        "schema": SCHEMA,
        "prefix": catalog.prefix,
        "generated_at": catalog.generated_at,
        "models": {
            m: {str(v): _version_doc(cv) for v, cv in versions.items()}
            for m, versions in catalog.models.items()
        },
        "skipped": [{"path": p, "reason": r} for p, r in catalog.skipped],
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def parse_catalog(data: bytes) -> Catalog:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CatalogError(f"catalog is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CatalogError("catalog: expected a JSON object")
    if doc.get("schema") != SCHEMA:
        raise CatalogError(f"catalog: unsupported schema {doc.get('schema')!r}")
    models: dict[str, dict[int, CatalogVersion]] = {}
    raw_models = doc.get("models")
    if not isinstance(raw_models, dict):
        raise CatalogError("catalog: models must be an object")
    for model, versions in raw_models.items():
        if not is_model_name(model) or not isinstance(versions, dict):
            raise CatalogError(f"catalog: bad model entry {model!r}")
        parsed: dict[int, CatalogVersion] = {}
        for vtext, entry in versions.items():
            v = parse_version(vtext)
            if v is None or not isinstance(entry, dict):
                raise CatalogError(f"catalog: bad version {model}/{vtext}")
            # informational (nodes do not act on it): a catalog from before manifests, or a
            # state this release does not know, reads as "none" rather than failing the catalog
            raw_state, raw_problem = entry.get("manifest"), entry.get("problem")
            state: ManifestState = next(
                (s for s in get_args(ManifestState) if s == raw_state), "none"
            )
            problem = raw_problem if isinstance(raw_problem, str) else None
            marker = entry.get("marker")
            marker = marker if isinstance(marker, int) and not isinstance(marker, bool) else None
            published_at = entry.get("published_at")
            published_at = (
                float(published_at)
                if isinstance(published_at, int | float) and not isinstance(published_at, bool)
                else None
            )
            try:
                publisher = _publisher(entry.get("publisher"))
                description, tags = check_notes(
                    entry.get("description", ""), entry.get("tags", {}), "catalog"
                )
            except ManifestError:  # informational: a bad one reads as none
                publisher, description, tags = None, "", {}
            kind = entry.get("kind", "savedmodel")
            if kind not in KINDS:  # a node must never install what it cannot tell apart
                raise CatalogError(f"catalog: {model}/{vtext}: unknown kind {kind!r}")
            try:
                parsed[v] = CatalogVersion(
                    complete=bool(entry["complete"]),
                    bytes=int(entry["bytes"]),
                    objects=int(entry["objects"]),
                    fingerprint=str(entry["fingerprint"]),
                    manifest=state,
                    problem=problem,
                    marker=marker,
                    published_at=published_at,
                    publisher=publisher,
                    description=description,
                    tags=tags,
                    kind=kind,
                )
            except (KeyError, TypeError, ValueError):
                raise CatalogError(f"catalog: bad version entry {model}/{vtext}") from None
        models[model] = parsed
    skipped = tuple(
        (str(s.get("path")), str(s.get("reason")))
        for s in doc.get("skipped") or []
        if isinstance(s, dict)
    )
    return Catalog(
        models=models,
        skipped=skipped,
        generated_at=float(doc.get("generated_at") or 0.0),
        prefix=str(doc.get("prefix") or ""),
    )


def _publisher(raw: object) -> Publisher | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k, ""), str) for k in PUBLISHER):
        raise ManifestError("catalog: bad publisher")
    return Publisher(*(str(raw.get(k, "")) for k in PUBLISHER))


def listed_at(metadata: Mapping[str, str] | None) -> float | None:
    try:
        return float((metadata or {})[LISTED_AT])
    except (KeyError, TypeError, ValueError):
        return None
