"""Publish a SavedModel directory or tarball as ``PREFIX/<model>/<version>/`` — or, with
``publish_image``, a container model's descriptor (``modelsync.container``).

Files upload in parallel, each upload's size and CRC32C are checked against the manifest built
from the local files before any upload, and the marker, which carries that manifest
(``modelsync.manifest``), is written last, so a reader that trusts the marker never sees a
partial version, and a node installs only what the manifest lists. Nothing is written before
every check has passed: a bad name, a directory that is not a SavedModel (its
``saved_model.pb`` must parse and have a signature; checked without TensorFlow), an unsafe
tarball or an existing version leave the bucket unchanged. ``overwrite`` of a version whose
manifest and objects already match the new content writes nothing (``Published.unchanged``).
``warmup`` (``--warmup FILE.jsonl``) publishes a staged copy of a directory with TF Serving's
warmup file written from JSON requests (``modelsync.warmup``); a tarball is refused with it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TextIO

from modelsync import __version__
from modelsync.container import Descriptor, DescriptorError, dump_descriptor
from modelsync.layout import (
    DESCRIPTOR_NAME,
    SAVED_MODEL_FILES,
    TARBALL_NAME,
    ObjectInfo,
    is_version,
    marker_object,
    model_name_problem,
    parse_listing,
    parse_version,
    prefix_dir,
    version_prefix,
)
from modelsync.local import file_crc32c_b64
from modelsync.manifest import (
    Manifest,
    ManifestError,
    Publisher,
    build_manifest,
    dump_manifest,
    parse_manifest,
)
from modelsync.protos import ProtoLoadError
from modelsync.savedmodel import (
    DEFAULT_MAX_TAR_BYTES,
    TarballError,
    check_tarball,
    local_files,
    local_saved_model_proto_problem,
    local_savedmodel_problem,
    saved_model_signatures,
)
from modelsync.settings import StoreSettings
from modelsync.store import PreconditionFailed, RemoteStore, StoreError
from modelsync.warmup import WARMUP_FILE, WarmupError, warmup_file_bytes


class PublishError(Exception):
    """Publishing was refused or failed; the message is one line for the user. ``kind``:
    "refused" (bad input: not a SavedModel, an unsafe tarball, a bad name), "exists" (the
    version is there already, or was written concurrently) or "failed" (the store)."""

    def __init__(self, message: str, kind: str = "refused") -> None:
        super().__init__(message)
        self.kind = kind


class PublishStore(RemoteStore, Protocol):
    """What publishing needs of a store: its calls, and where it publishes (bucket, prefix,
    marker)."""

    settings: StoreSettings


@dataclass(frozen=True)
class Published:
    model: str
    version: int
    files: int
    bytes: int
    seconds: float
    uri: str
    unchanged: bool = False  # the version already held exactly this content: nothing written


def next_version(store: PublishStore, prefix: str, model: str) -> int:
    base = prefix_dir(prefix, model)
    versions = []
    for p in store.list_prefixes(base):
        v = parse_version(p[len(base) :].rstrip("/"))
        if v is not None:
            versions.append(v)
    return max(versions, default=0) + 1


def plan_files(path: Path, max_tar_bytes: int) -> list[tuple[str, Path]]:
    """(relative object name, local file) pairs, after checking the source is a SavedModel."""
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz")):
            raise PublishError(f"{path}: a file must be a .tar.gz of a SavedModel")
        try:
            check_tarball(path, max_tar_bytes, check_proto=True)
        except TarballError as exc:
            raise PublishError(f"{path}: {exc}") from None
        except ProtoLoadError as exc:
            raise PublishError(f"{path}: cannot check saved_model.pb: {exc}") from None
        return [(TARBALL_NAME, path)]
    if not path.exists():
        raise PublishError(f"{path}: no such file or directory")
    try:
        problem = local_savedmodel_problem(path) or local_saved_model_proto_problem(path)
    except ProtoLoadError as exc:
        raise PublishError(f"{path}: cannot check saved_model.pb: {exc}") from None
    if problem:
        raise PublishError(f"{path}: not a SavedModel: {problem}")
    return [(rel, path / rel) for rel in local_files(path)]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the staged copy costs no disk where it can
    except OSError:
        shutil.copy2(src, dst)


def stage_warmup(
    path: Path, warmup: Path, dest: Path, model: str, max_tar_bytes: int = DEFAULT_MAX_TAR_BYTES
) -> Path:
    """A copy of the SavedModel directory ``path`` in ``dest`` with ``WARMUP_FILE`` written from
    the JSONL requests of ``warmup`` (``modelsync.warmup``), checked against its signatures.
    A tarball is refused (it is published as it is: put the file into it)."""
    if path.is_file():
        raise PublishError(
            f"{path}: --warmup needs a SavedModel directory; a tarball is "
            f"published as it is (put {WARMUP_FILE} into it)"
        )
    plan_files(path, max_tar_bytes)  # a SavedModel directory, or PublishError
    if (path / WARMUP_FILE).exists():
        raise PublishError(
            f"{path}: already has {WARMUP_FILE}; publish it without --warmup, or remove that file"
        )
    name = next(n for n in SAVED_MODEL_FILES if (path / n).is_file())
    try:
        signatures = saved_model_signatures(name, (path / name).read_bytes())
        lines = warmup.read_text(encoding="utf-8").splitlines()
        data = warmup_file_bytes(lines, signatures, model, source=str(warmup))
    except WarmupError as exc:
        raise PublishError(str(exc)) from None
    except (OSError, UnicodeDecodeError, ValueError, ProtoLoadError) as exc:
        raise PublishError(f"{warmup}: {exc}") from None
    copy = dest / "model"
    shutil.copytree(path, copy, copy_function=_link_or_copy)
    (copy / WARMUP_FILE).parent.mkdir(exist_ok=True)
    (copy / WARMUP_FILE).write_bytes(data)
    return copy


def publisher() -> Publisher:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = str(os.getuid())
    return Publisher(user=user, host=socket.gethostname(), tool=f"modelsync {__version__}")


def local_manifest(
    files: list[tuple[str, Path]], workers: int, options: PublishOptions | None = None
) -> Manifest:
    """The manifest of the local files (their CRC32Cs computed in parallel), with who publishes
    and the options' description and tags."""
    options = options or PublishOptions(workers=workers)

    def entry(item: tuple[str, Path]) -> tuple[str, int, str]:
        rel, local = item
        return rel, local.stat().st_size, file_crc32c_b64(local)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        entries = list(pool.map(entry, files))
    return build_manifest(
        entries,
        options.publisher or publisher(),
        time.time(),
        options.description,
        options.tags,
    )


def _same_content(
    store: PublishStore, existing: list[ObjectInfo], manifest: Manifest, model: str, version: int
) -> bool:
    """The version in the bucket is whole, its marker's manifest lists exactly ``manifest``'s
    files, and its objects match them."""
    prefix, marker = store.settings.prefix, store.settings.marker
    rv = parse_listing(existing, prefix, marker).version(model, version)
    if rv is None or rv.marker_generation is None:
        return False
    name = marker_object(prefix, model, version, marker)
    try:
        old = parse_manifest(store.read(name, generation=rv.marker_generation))
    except (ManifestError, StoreError):
        return False
    return old is not None and old.same_files(manifest) and manifest.mismatch(rv.files) is None


@dataclass(frozen=True)
class PublishOptions:
    """How to publish: ``version`` None takes the next one; ``warmup`` is a JSONL file of
    REST-form requests, written into the published version as
    ``assets.extra/tf_serving_warmup_requests`` (a staged copy of the directory is published;
    the source is left as it is). ``description`` and ``tags`` go into the manifest;
    ``publisher`` (default: this user, host and tool) says who publishes — the master names
    the admin who uploaded."""

    version: int | None = None
    overwrite: bool = False
    workers: int = 8
    max_tar_bytes: int = DEFAULT_MAX_TAR_BYTES
    warmup: str | os.PathLike[str] | None = None
    progress: Callable[[int, int], None] | None = None
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    publisher: Publisher | None = None


class _Upload:
    """One publication's files, checked against its manifest as they land."""

    def __init__(
        self, store: PublishStore, base: str, manifest: Manifest, options: PublishOptions
    ) -> None:
        self.store, self.base, self.options = store, base, options
        self.expected = {f.path: f for f in manifest.files}
        self.total_bytes = sum(f.size for f in manifest.files)
        self.done_bytes = 0
        self._lock = threading.Lock()

    def put(self, item: tuple[str, Path]) -> None:
        rel, local = item
        info = self.store.upload(self.base + rel, str(local), if_generation_match=0)
        want = self.expected[rel]
        if (info.size, info.crc32c) != (want.size, want.crc32c):
            raise PublishError(
                f"{local} changed while it was published (stored "
                f"{info.size} bytes, crc32c {info.crc32c}; the manifest "
                f"says {want.size}, {want.crc32c}); the version has no "
                "marker: publish it again"
            )
        with self._lock:
            self.done_bytes += want.size
            if self.options.progress:
                self.options.progress(self.done_bytes, self.total_bytes)


def _check_target(model: str, options: PublishOptions) -> None:
    problem = model_name_problem(model)
    if problem:
        raise PublishError(problem)
    if options.version is not None and not is_version(options.version):
        raise PublishError(f"bad version {options.version}: want a positive 64-bit integer")


def publish(
    store: PublishStore,
    path: str | os.PathLike[str],
    model: str,
    options: PublishOptions = PublishOptions(),
) -> Published:
    """Publish ``path`` as a new version of ``model`` under the store's prefix and marker."""
    started = time.monotonic()
    _check_target(model, options)
    if options.warmup is not None:
        with tempfile.TemporaryDirectory(prefix="modelsync-publish-") as tmp:
            staged = stage_warmup(
                Path(path), Path(options.warmup), Path(tmp), model, options.max_tar_bytes
            )
            return publish(store, staged, model, replace(options, warmup=None))
    files = plan_files(Path(path), options.max_tar_bytes)
    return _publish_files(store, files, model, options, str(path), started)


def publish_image(
    store: PublishStore,
    descriptor: Descriptor,
    model: str,
    options: PublishOptions = PublishOptions(),
) -> Published:
    """Publish a container model's version: its descriptor (``modelsync.container``) as the
    version's one object, ``DESCRIPTOR_NAME``, and the marker with its manifest, as for a
    SavedModel."""
    started = time.monotonic()
    _check_target(model, options)
    if options.warmup is not None:
        raise PublishError("--warmup is for SavedModels; a container model warms itself up")
    try:
        body = dump_descriptor(descriptor)
    except DescriptorError as exc:
        raise PublishError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="modelsync-publish-") as tmp:
        local = Path(tmp) / DESCRIPTOR_NAME
        local.write_bytes(body)
        return _publish_files(
            store, [(DESCRIPTOR_NAME, local)], model, options, descriptor.image, started
        )


def _publish_files(
    store: PublishStore,
    files: list[tuple[str, Path]],
    model: str,
    options: PublishOptions,
    path: str,
    started: float,
) -> Published:
    """Publish checked local files (relative name, local path) as a new version of ``model``."""
    marker = store.settings.marker
    if any(rel == marker for rel, _ in files):
        raise PublishError(f"{path}: holds a file named like the marker {marker!r}")
    try:
        manifest = local_manifest(files, options.workers, options)
    except (OSError, ManifestError) as exc:
        raise PublishError(f"{path}: {exc}") from None

    def published(version: int, unchanged: bool = False) -> Published:
        base = version_prefix(store.settings.prefix, model, version)
        return Published(
            model=model,
            version=version,
            files=len(files),
            bytes=sum(f.size for f in manifest.files),
            seconds=time.monotonic() - started,
            uri=f"gs://{store.settings.bucket}/{base}",
            unchanged=unchanged,
        )

    try:
        version = options.version
        if version is None:
            version = next_version(store, store.settings.prefix, model)
            # publishing again what the newest version holds is a no-op (CI retries, hooks)
            latest = version - 1
            if latest >= 1 and _same_content(
                store,
                store.list_objects(version_prefix(store.settings.prefix, model, latest)),
                manifest,
                model,
                latest,
            ):
                return published(latest, unchanged=True)
        if _write_version(store, model, version, files, manifest, options):
            return published(version, unchanged=True)
    except PreconditionFailed as exc:
        raise PublishError(
            f"version {version} of {model} was written concurrently by someone else: {exc}",
            "exists",
        ) from None
    except StoreError as exc:
        raise PublishError(f"upload failed: {exc}", "failed") from None
    return published(version)


def _write_version(
    store: PublishStore,
    model: str,
    version: int,
    files: list[tuple[str, Path]],
    manifest: Manifest,
    options: PublishOptions,
) -> bool:
    """Upload the files, then the marker (last). True when the bucket already held exactly
    this content (nothing written)."""
    base = version_prefix(store.settings.prefix, model, version)
    marker = store.settings.marker
    existing = store.list_objects(base)
    if existing and not options.overwrite:
        raise PublishError(
            f"gs://{store.settings.bucket}/{base} already exists "
            f"({len(existing)} objects); use --overwrite to replace it",
            "exists",
        )
    if existing and _same_content(store, existing, manifest, model, version):
        return True
    # Marker first, so no reader trusts the old version while it is replaced.
    for obj in sorted(existing, key=lambda o: not o.name.endswith("/" + marker)):
        store.delete(obj.name)
    upload = _Upload(store, base, manifest, options)
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        list(pool.map(upload.put, files))
    store.write(
        base + marker,
        dump_manifest(manifest),
        if_generation_match=0,
        content_type="application/json",
    )
    return False


class ProgressBar:
    """A one-line progress bar on a TTY; silent elsewhere."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.stream: TextIO = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.label = label
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        frac = done / total if total else 1.0
        width = 30
        filled = int(frac * width)
        line = (
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} "
            f"{done / 2**20:8.1f}/{total / 2**20:.1f} MiB"
        )
        self.stream.write(line)
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
