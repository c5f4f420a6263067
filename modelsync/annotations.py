"""Edits of a version's description and tags, kept in the bucket (pure: no I/O).

The manifest in a version's marker is written once, by its publisher, and never changes (a node
checks the version's files against it). What operators change later — a better description, a
tag — lives beside the policy, in ``PREFIX/_modelsync/annotations.json``, written only by the
master, always with ``if_generation_match`` (a lost race is applied again on the new document)::

    {"schema": 1,
     "models": {"ranker": {"41": {"description": "…", "tags": {"owner": "ana"},
                                  "by": "ana", "at": 1795300000.0}}}}

So the bucket stays the one source of truth: a new master (or ``modelsync list``) reads the same
notes, and nothing about them lives only in the master's database. An annotation replaces the
manifest's description and tags as a whole (``notes``); ``by`` and ``at`` say who edited them
last, and when. Nodes never read this object.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelsync.layout import is_model_name, parse_version
from modelsync.manifest import ManifestError, check_notes

SCHEMA = 1


class AnnotationError(ValueError):
    pass


@dataclass(frozen=True)
class Annotation:
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    by: str = ""  # the actor who edited them last
    at: float = 0.0


@dataclass(frozen=True)
class Annotations:
    models: Mapping[str, Mapping[int, Annotation]] = field(default_factory=dict)

    def get(self, model: str, version: int) -> Annotation | None:
        return self.models.get(model, {}).get(version)

    def with_version(self, model: str, version: int, note: Annotation) -> Annotations:
        models = {m: dict(vs) for m, vs in self.models.items()}
        models.setdefault(model, {})[version] = note
        return replace(self, models=models)


@dataclass(frozen=True)
class Notes:
    """What a version says about itself: the manifest's, or the annotation's when edited."""

    description: str
    tags: Mapping[str, str]
    edited_by: str | None = None
    edited_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "tags": dict(self.tags),
            "edited_by": self.edited_by,
            "edited_at": self.edited_at,
        }


def notes(description: str, tags: Mapping[str, str], note: Annotation | None) -> Notes:
    if note is None:
        return Notes(description, dict(tags))
    return Notes(note.description, dict(note.tags), note.by, note.at)


def dump_annotations(doc: Annotations) -> bytes:
    out = {
        "schema": SCHEMA,
        "models": {
            m: {
                str(v): {"description": a.description, "tags": dict(a.tags), "by": a.by, "at": a.at}
                for v, a in sorted(vs.items())
            }
            for m, vs in sorted(doc.models.items())
        },
    }
    return json.dumps(out, indent=1, sort_keys=True).encode()


def parse_annotations(data: bytes) -> Annotations:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"annotations: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise AnnotationError(f"annotations: expected an object with schema {SCHEMA}")
    raw = doc.get("models")
    if not isinstance(raw, dict):
        raise AnnotationError("annotations: 'models' must be an object")
    models: dict[str, dict[int, Annotation]] = {}
    for model, versions in raw.items():
        if not is_model_name(model) or not isinstance(versions, dict):
            raise AnnotationError(f"annotations: bad model entry {model!r}")
        for text, entry in versions.items():
            v = parse_version(text)
            if v is None or not isinstance(entry, dict):
                raise AnnotationError(f"annotations: bad version {model}/{text}")
            models.setdefault(model, {})[v] = _annotation(entry, f"annotations: {model}/{v}")
    return Annotations(models)


def _annotation(entry: dict[str, Any], what: str) -> Annotation:
    try:
        description, tags = check_notes(entry.get("description", ""), entry.get("tags", {}), what)
    except ManifestError as exc:
        raise AnnotationError(str(exc)) from None
    by, at = entry.get("by", ""), entry.get("at", 0.0)
    if not isinstance(by, str) or not isinstance(at, int | float) or not math.isfinite(at):
        raise AnnotationError(f"{what}: 'by' must be a string and 'at' a time")
    return Annotation(description, tags, by, float(at))
