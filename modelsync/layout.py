"""The bucket layout (pure: no I/O).

``gs://BUCKET/PREFIX/<model>/<version>/...``: a model name matches ``MODEL_NAME_RE``, a version is
a positive decimal int64 without leading zeros. A version holds a SavedModel directory or a single
``model.tar.gz``; it is complete when its marker exists, or (for publishers that write none) when
it is structurally whole and its listing has not changed for ``settle_s`` seconds.
Anything else under the prefix is skipped with a reason, never an exception.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeGuard

# The one home of the name rules: the regexes below and every OpenAPI ``pattern`` come from
# these (``json_pattern``). A node id follows the model-name rule too (safe in a path and a URL).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
VERSION_PATTERN = r"[1-9][0-9]{0,18}"
MODEL_NAME_RE = re.compile(NAME_PATTERN + r"\Z")
VERSION_RE = re.compile(VERSION_PATTERN + r"\Z")
MAX_VERSION = 2**63 - 1
RESERVED_DIR = "_modelsync"
TARBALL_NAME = "model.tar.gz"
# A container model's version: this one object (``modelsync.container``) and the marker.
DESCRIPTOR_NAME = "container.json"
KINDS = ("savedmodel", "container")
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_SHARD_RE = re.compile(r"variables/variables\.data-(\d{5})-of-(\d{5})\Z")
VARIABLES_INDEX = "variables/variables.index"


def json_pattern(pattern: str) -> str:
    """A rule's pattern as JSON Schema (OpenAPI) writes it: anchored at both ends."""
    return f"^{pattern}$"


def is_model_name(name: str) -> bool:
    return bool(MODEL_NAME_RE.match(name))


def is_version(value: object) -> bool:
    """A version as a number: an int (not a bool) from 1 to ``MAX_VERSION``."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_VERSION


def is_node_id(node_id: object) -> TypeGuard[str]:
    return isinstance(node_id, str) and MODEL_NAME_RE.match(node_id) is not None


def parse_version(text: str) -> int | None:
    """``"42"`` -> 42; anything that is not a canonical positive int64 -> None."""
    if not VERSION_RE.match(text):
        return None
    value = int(text)
    return value if value <= MAX_VERSION else None


def model_name_problem(name: str) -> str | None:
    if is_model_name(name):
        return None
    if name == RESERVED_DIR:
        return f"{RESERVED_DIR!r} is reserved for modelsync"
    return f"bad model name {name!r}: want 1-128 of [A-Za-z0-9_.-], starting with a letter or digit"


@dataclass(frozen=True)
class ObjectInfo:
    """One object as a listing or a metadata read returns it (fields projected)."""

    name: str
    generation: int
    size: int
    crc32c: str | None = None
    md5: str | None = None
    metadata: Mapping[str, str] | None = None
    updated: float | None = None


@dataclass(frozen=True)
class RemoteFile:
    """A file of a version, its path relative to the version directory."""

    path: str
    generation: int
    size: int
    crc32c: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class RemoteVersion:
    model: str
    version: int
    files: tuple[RemoteFile, ...]
    marker_generation: int | None = None
    marker_updated: float | None = None  # when the marker was written: the publication time

    @property
    def has_marker(self) -> bool:
        return self.marker_generation is not None

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def fingerprint(self) -> str:
        return fingerprint_files(self.files)

    @property
    def is_tarball(self) -> bool:
        return len(self.files) == 1 and self.files[0].path == TARBALL_NAME

    @property
    def kind(self) -> str:
        """ "container" (a descriptor: ``modelsync.container``) or "savedmodel"."""
        return version_kind(f.path for f in self.files)

    def problem(self) -> str | None:
        """Why the listed files do not make a whole SavedModel (None when they do)."""
        return structure_problem([f.path for f in self.files])


def fingerprint_files(files: Iterable[RemoteFile]) -> str:
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda item: item.path):
        digest.update(f"{f.path}\0{f.generation}\n".encode())
    return digest.hexdigest()[:32]


def version_kind(paths: Iterable[str]) -> str:
    """A version's kind from its file names: "container" when it holds ``DESCRIPTOR_NAME``."""
    return "container" if DESCRIPTOR_NAME in set(paths) else "savedmodel"


def structure_problem(paths: Iterable[str]) -> str | None:
    """Check the file names of one version (relative paths) against the SavedModel rules, or
    a container model's: its descriptor, alone."""
    names = set(paths)
    if not names:
        return "no files"
    if DESCRIPTOR_NAME in names:
        return None if len(names) == 1 else f"{DESCRIPTOR_NAME} must be the only file of a version"
    if TARBALL_NAME in names:
        return None if len(names) == 1 else f"{TARBALL_NAME} must be the only file of a version"
    if not any(n in names for n in SAVED_MODEL_FILES):
        return "no saved_model.pb or saved_model.pbtxt"
    shards: dict[int, set[int]] = {}
    for n in names:
        m = _SHARD_RE.match(n)
        if m:
            shards.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    if len(shards) > 1:
        return f"variables shards disagree on their count: {sorted(shards)}"
    if shards:
        ((total, present),) = shards.items()
        missing = sorted(set(range(total)) - present)
        if missing or total == 0:
            return f"variables shards missing: {missing[:5]} of {total}"
        if VARIABLES_INDEX not in names:
            return "variables/variables.index missing"
    elif VARIABLES_INDEX in names:
        return "variables/variables.index without any variables.data shard"
    return None


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class BucketListing:
    """A listing grouped into models and versions, plus what was skipped and why."""

    models: dict[str, dict[int, RemoteVersion]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    def version(self, model: str, version: int) -> RemoteVersion | None:
        return self.models.get(model, {}).get(version)


def join(prefix: str, *parts: str) -> str:
    return "/".join(p for p in (prefix, *parts) if p)


def prefix_dir(prefix: str, *parts: str) -> str:
    """The listing prefix of ``PREFIX/parts...``: with a trailing ``/``, or ``""`` for the
    bucket root."""
    path = join(prefix, *parts)
    return path + "/" if path else ""


def version_prefix(prefix: str, model: str, version: int) -> str:
    return prefix_dir(prefix, model, str(version))


def marker_object(prefix: str, model: str, version: int, marker: str) -> str:
    return version_prefix(prefix, model, version) + marker


def parse_listing(objects: Iterable[ObjectInfo], prefix: str, marker: str) -> BucketListing:
    """Group a listing of ``PREFIX/`` into models and versions; never raises on bad names."""
    base = prefix_dir(prefix)
    files: dict[tuple[str, int], list[RemoteFile]] = {}
    markers: dict[tuple[str, int], ObjectInfo] = {}
    skipped: dict[str, str] = {}
    for obj in objects:
        if not obj.name.startswith(base):
            continue
        rel = obj.name[len(base) :]
        if rel.endswith("/"):
            continue  # a "folder" placeholder object some tools create
        parts = rel.split("/")
        if parts[0] == RESERVED_DIR:
            continue
        if len(parts) < 3:
            skipped.setdefault(base + rel, "not inside a <model>/<version>/ directory")
            continue
        model, version_text, rest = parts[0], parts[1], "/".join(parts[2:])
        problem = model_name_problem(model)
        if problem:
            skipped.setdefault(base + model + "/", problem)
            continue
        version = parse_version(version_text)
        if version is None:
            skipped.setdefault(
                f"{base}{model}/{version_text}/",
                f"bad version {version_text!r}: want a positive integer without leading zeros",
            )
            continue
        if any(p in ("", ".", "..") for p in parts[2:]):
            skipped.setdefault(base + rel, "object name has an empty, '.' or '..' segment")
            continue
        key = (model, version)
        if rest == marker:
            markers[key] = obj
            continue
        files.setdefault(key, []).append(
            RemoteFile(
                path=rest, generation=obj.generation, size=obj.size, crc32c=obj.crc32c, md5=obj.md5
            )
        )
    listing = BucketListing(skipped=[Skipped(p, r) for p, r in sorted(skipped.items())])
    for key in sorted(set(files) | set(markers)):
        model, version = key
        mark = markers.get(key)
        listing.models.setdefault(model, {})[version] = RemoteVersion(
            model=model,
            version=version,
            files=tuple(sorted(files.get(key, []), key=lambda f: f.path)),
            marker_generation=None if mark is None else mark.generation,
            marker_updated=None if mark is None or mark.updated is None else round(mark.updated, 3),
        )
    return listing


class SettleTracker:
    """Remembers when each unmarked version's listing last changed (``settled``: unchanged for
    ``settle_s``). The caller passes the clock, so the rules stay pure and testable."""

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._seen: dict[tuple[str, int], tuple[str, float]] = {}

    @classmethod
    def markers_only(cls) -> SettleTracker:
        """A tracker under which only a marker makes a version complete."""
        return cls(math.inf)

    def settled(self, rv: RemoteVersion, now: float) -> bool:
        key = (rv.model, rv.version)
        fp = rv.fingerprint
        seen = self._seen.get(key)
        if seen is None or seen[0] != fp:
            self._seen[key] = (fp, now)
            return self.settle_s <= 0
        return now - seen[1] >= self.settle_s

    def forget_missing(self, listing: BucketListing) -> None:
        for key in list(self._seen):
            if listing.version(*key) is None:
                del self._seen[key]


def incomplete_reason(
    rv: RemoteVersion, tracker: SettleTracker, now: float, manifest: str = "none"
) -> str | None:
    """The one rule of "is this version complete?": None when it is, else why not.

    Complete = the listing makes a whole SavedModel (or one tarball), its manifest (the
    marker's body, ``manifest`` as ``modelsync.manifest.manifest_state`` gives it; "none" when
    unread) does not disown it, and it has its marker — or, for publishers that write none, its
    listing has not changed for the tracker's ``settle_s``."""
    problem = rv.problem()
    if problem is not None:
        return problem
    if manifest == "mismatch":
        return "its files do not match its manifest"
    if rv.has_marker or tracker.settled(rv, now):
        return None
    if math.isinf(tracker.settle_s):
        return "no marker yet"
    return f"no marker; waiting for its listing to stay unchanged for {tracker.settle_s:g} s"


def complete_versions(
    listing: BucketListing, tracker: SettleTracker, now: float
) -> dict[str, dict[int, RemoteVersion]]:
    """Models -> their complete versions (``incomplete_reason``)."""
    out: dict[str, dict[int, RemoteVersion]] = {}
    for model, versions in listing.models.items():
        done = {v: rv for v, rv in versions.items() if incomplete_reason(rv, tracker, now) is None}
        if done:
            out[model] = done
    tracker.forget_missing(listing)
    return out
