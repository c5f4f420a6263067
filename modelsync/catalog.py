"""The catalog: what the bucket holds, listed once per cluster (pure: no I/O).

``PREFIX/_modelsync/catalog.json``::

    {"schema": 1, "prefix": "models", "generated_at": 1795300000.0,
     "models": {"ranker": {"41": {"complete": true, "bytes": 1234, "objects": 5,
                                  "fingerprint": "…"}}},
     "skipped": [{"path": "models/bad name/", "reason": "…"}]}

Its freshness is the custom metadata field ``listed_at`` (unix seconds), patched on every
refresh without rewriting the body, so a node's idle poll is one metadata read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from modelsync.layout import (
    RESERVED_DIR,
    BucketListing,
    SettleTracker,
    is_model_name,
    join,
    parse_version,
)

SCHEMA = 1
CATALOG_NAME = "catalog.json"
POLICY_NAME = "policy.json"
LISTED_AT = "listed_at"


class CatalogError(ValueError):
    pass


def catalog_object(prefix: str) -> str:
    return join(prefix, RESERVED_DIR, CATALOG_NAME)


def policy_object(prefix: str) -> str:
    return join(prefix, RESERVED_DIR, POLICY_NAME)


@dataclass(frozen=True)
class CatalogVersion:
    complete: bool
    bytes: int
    objects: int
    fingerprint: str


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


def build_catalog(listing: BucketListing, tracker: SettleTracker, now: float,
                  prefix: str) -> Catalog:
    models: dict[str, dict[int, CatalogVersion]] = {}
    for model, versions in sorted(listing.models.items()):
        models[model] = {
            v: CatalogVersion(complete=tracker.is_complete(rv, now), bytes=rv.bytes,
                              objects=len(rv.files), fingerprint=rv.fingerprint)
            for v, rv in sorted(versions.items())}
    tracker.forget_missing(listing)
    return Catalog(models=models, skipped=tuple((s.path, s.reason) for s in listing.skipped),
                   generated_at=now, prefix=prefix)


def dump_catalog(catalog: Catalog) -> bytes:
    doc = {"schema": SCHEMA, "prefix": catalog.prefix, "generated_at": catalog.generated_at,
           "models": {m: {str(v): {"complete": cv.complete, "bytes": cv.bytes,
                                   "objects": cv.objects, "fingerprint": cv.fingerprint}
                          for v, cv in versions.items()}
                      for m, versions in catalog.models.items()},
           "skipped": [{"path": p, "reason": r} for p, r in catalog.skipped]}
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
            try:
                parsed[v] = CatalogVersion(complete=bool(entry["complete"]),
                                           bytes=int(entry["bytes"]),
                                           objects=int(entry["objects"]),
                                           fingerprint=str(entry["fingerprint"]))
            except (KeyError, TypeError, ValueError):
                raise CatalogError(f"catalog: bad version entry {model}/{vtext}") from None
        models[model] = parsed
    skipped = tuple((str(s.get("path")), str(s.get("reason")))
                    for s in doc.get("skipped") or [] if isinstance(s, dict))
    return Catalog(models=models, skipped=skipped,
                   generated_at=float(doc.get("generated_at") or 0.0),
                   prefix=str(doc.get("prefix") or ""))


def listed_at(metadata: Mapping[str, str] | None) -> float | None:
    try:
        return float((metadata or {})[LISTED_AT])
    except (KeyError, TypeError, ValueError):
        return None
