"""The manifest a version's marker carries (pure: no I/O).

``modelsync publish`` writes into ``PREFIX/<model>/<version>/_READY`` (last, with
``if_generation_match=0``)::

    {"schema": 1,
     "files": [{"path": "saved_model.pb", "size": 1234, "crc32c": "AAAAAA=="}, ...],
     "publisher": {"user": "ana", "host": "build-7", "tool": "modelsync 0.1.0"},
     "published_at": 1795300000.0,
     "description": "ranker trained on March data", "tags": {"dataset": "2026-03"}}

``files`` is every file of the version except the marker, sorted by path, with its size and
CRC32C (base64, as GCS reports it). ``description`` and ``tags`` (optional; at most
``MAX_DESCRIPTION_CHARS`` and ``MAX_TAGS`` tags, by ``check_notes``) say what the version is, as
a registry's would; the master's annotations (``modelsync.annotations``) may edit them later.
A version whose marker carries a manifest is installed only when the bucket's listing matches
it file for file. A marker without one keeps the rules that
were there before manifests: an empty marker, or any body that does not start with ``{``
(third-party publishers write empty markers, or a word or a timestamp), or a JSON object
without ``schema`` (what ``modelsync publish`` wrote before manifests; ``{}``). A body that
starts with ``{`` and is not such an object (a truncated manifest, say) is malformed.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from modelsync.layout import RemoteFile

SCHEMA = 1
MAX_MARKER_BYTES = 64 * 2**20  # a bigger marker is not read: it is not a manifest
SHOWN_DIFFERENCES = 3
MAX_DESCRIPTION_CHARS = 2000
MAX_TAGS = 32
MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS = 64, 256
TAG_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}\Z")
ManifestState = Literal["verified", "mismatch", "none"]


class ManifestError(ValueError):
    """A marker that claims to be a manifest is malformed."""


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size: int
    crc32c: str


@dataclass(frozen=True)
class Publisher:
    user: str = ""
    host: str = ""
    tool: str = ""


@dataclass(frozen=True)
class Manifest:
    files: tuple[ManifestFile, ...]
    publisher: Publisher = field(default_factory=Publisher)
    published_at: float = 0.0
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(sorted(self.files, key=lambda f: f.path)))

    def mismatch(self, files: Sequence[RemoteFile]) -> str | None:
        """What differs between the manifest and a version's listed objects (the marker
        excluded): one line naming the first few differences, or None when they match."""
        listed = {f.path: f for f in files}
        promised = {f.path: f for f in self.files}
        diffs: list[str] = []
        for path in sorted(set(promised) | set(listed)):
            want, have = promised.get(path), listed.get(path)
            if have is None:
                diffs.append(f"missing {path}")
            elif want is None:
                diffs.append(f"extra {path}")
            elif have.size != want.size:
                diffs.append(f"{path} size {have.size} != {want.size} in the manifest")
            elif have.crc32c != want.crc32c:
                diffs.append(f"{path} crc32c {have.crc32c} != {want.crc32c} in the manifest")
        if not diffs:
            return None
        more = len(diffs) - SHOWN_DIFFERENCES
        text = "; ".join(diffs[:SHOWN_DIFFERENCES]) + (f"; and {more} more" if more > 0 else "")
        return f"bucket does not match the manifest ({len(diffs)} differences): {text}"

    def same_files(self, other: Manifest) -> bool:
        return self.files == other.files


def manifest_state(
    manifest: Manifest | ManifestError | None, files: Sequence[RemoteFile]
) -> tuple[ManifestState, str | None]:
    """("verified" | "mismatch" | "none", what differs) of a version's listing."""
    if manifest is None:
        return "none", None
    if isinstance(manifest, ManifestError):
        return "mismatch", str(manifest)
    problem = manifest.mismatch(files)
    return ("verified", None) if problem is None else ("mismatch", problem)


def dump_manifest(manifest: Manifest) -> bytes:
    doc = {
        "schema": SCHEMA,
        "files": [{"path": f.path, "size": f.size, "crc32c": f.crc32c} for f in manifest.files],
        "publisher": {
            "user": manifest.publisher.user,
            "host": manifest.publisher.host,
            "tool": manifest.publisher.tool,
        },
        "published_at": manifest.published_at,
    }
    if manifest.description:
        doc["description"] = manifest.description
    if manifest.tags:
        doc["tags"] = dict(manifest.tags)
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def build_manifest(
    files: Iterable[tuple[str, int, str]],
    publisher: Publisher,
    published_at: float,
    description: str = "",
    tags: Mapping[str, str] | None = None,
) -> Manifest:
    """From (relative path, size, crc32c) triples; checked as a parsed manifest would be."""
    entries = tuple(ManifestFile(p, s, c) for p, s, c in files)
    for i, f in enumerate(entries):
        _check_file(i, f)
    _check_unique(entries)
    description, checked = check_notes(description, dict(tags or {}), "manifest")
    return Manifest(entries, publisher, published_at, description, checked)


def check_notes(description: Any, tags: Any, what: str) -> tuple[str, dict[str, str]]:
    """A version's description and tags, checked (one rule for the manifest, the API and the
    CLI): a string of at most MAX_DESCRIPTION_CHARS; at most MAX_TAGS tags, keys by TAG_KEY_RE,
    values strings of at most MAX_TAG_VALUE_CHARS. ManifestError names what is wrong."""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise ManifestError(
            f"{what}: 'description' must be a string of at most {MAX_DESCRIPTION_CHARS} characters"
        )
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
        raise ManifestError(f"{what}: 'tags' must be an object of at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG_KEY_RE.match(key):
            raise ManifestError(
                f"{what}: tag {key!r}: a key is 1-{MAX_TAG_KEY_CHARS} of [A-Za-z0-9_.:/-], "
                "starting with a letter or digit"
            )
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE_CHARS:
            raise ManifestError(
                f"{what}: tag {key!r}: the value must be a string of at most "
                f"{MAX_TAG_VALUE_CHARS} characters"
            )
    return description.strip(), dict(sorted(tags.items()))


def parse_tag(text: str) -> tuple[str, str]:
    """``k=v`` (``--tag``) as a pair; ManifestError when there is no ``=``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ManifestError(f"tag {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def parse_manifest(data: bytes) -> Manifest | None:
    """The manifest in a marker's body; None for a marker without one (empty, not starting
    with ``{``, or a JSON object without ``schema``); ManifestError when it is malformed."""
    if not data.lstrip().startswith(b"{"):
        return None
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"marker is not a JSON manifest: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("marker is not a JSON manifest: expected an object")
    if "schema" not in doc:
        return None
    if doc["schema"] != SCHEMA:
        raise ManifestError(f"manifest: unsupported schema {doc['schema']!r} (want {SCHEMA})")
    raw = doc.get("files")
    if not isinstance(raw, list) or not raw:
        raise ManifestError("manifest: 'files' must be a non-empty list")
    files = tuple(_parse_file(i, entry) for i, entry in enumerate(raw))
    _check_unique(files)
    description, tags = check_notes(doc.get("description", ""), doc.get("tags", {}), "manifest")
    return Manifest(
        files,
        _parse_publisher(doc.get("publisher")),
        _parse_time(doc.get("published_at")),
        description,
        tags,
    )


def _parse_file(i: int, entry: Any) -> ManifestFile:
    if not isinstance(entry, dict) or set(entry) != {"path", "size", "crc32c"}:
        raise ManifestError(
            f"manifest: files[{i}] must be an object with exactly path, size and crc32c"
        )
    path, size, crc = entry["path"], entry["size"], entry["crc32c"]
    if not isinstance(path, str) or not isinstance(crc, str):
        raise ManifestError(f"manifest: files[{i}]: path and crc32c must be strings")
    if not isinstance(size, int) or isinstance(size, bool):
        raise ManifestError(f"manifest: files[{i}] ({path}): size must be an integer")
    f = ManifestFile(path, size, crc)
    _check_file(i, f)
    return f


def _check_file(i: int, f: ManifestFile) -> None:
    if not f.path or f.path.startswith("/") or any(p in ("", ".", "..") for p in f.path.split("/")):
        raise ManifestError(f"manifest: files[{i}]: bad relative path {f.path!r}")
    if f.size < 0:
        raise ManifestError(f"manifest: files[{i}] ({f.path}): negative size")
    try:
        ok = len(base64.b64decode(f.crc32c, validate=True)) == 4
    except (binascii.Error, ValueError):
        ok = False
    if not ok:
        raise ManifestError(
            f"manifest: files[{i}] ({f.path}): crc32c {f.crc32c!r} is not the base64 of 4 bytes"
        )


def _check_unique(files: Sequence[ManifestFile]) -> None:
    counts = Counter(f.path for f in files)
    if len(counts) != len(files):
        dup = sorted(p for p, n in counts.items() if n > 1)
        raise ManifestError(f"manifest: duplicate paths {dup[:SHOWN_DIFFERENCES]}")


def _parse_publisher(raw: Any) -> Publisher:
    if raw is None:
        return Publisher()
    if not isinstance(raw, dict) or not all(
        isinstance(raw.get(k, ""), str) for k in ("user", "host", "tool")
    ):
        raise ManifestError("manifest: 'publisher' must be an object of strings (user, host, tool)")
    return Publisher(raw.get("user", ""), raw.get("host", ""), raw.get("tool", ""))


def _parse_time(raw: Any) -> float:
    if raw is None:
        return 0.0
    if not isinstance(raw, int | float) or isinstance(raw, bool) or not math.isfinite(raw):
        raise ManifestError("manifest: 'published_at' must be a number (unix seconds)")
    return float(raw)
