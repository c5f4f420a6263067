"""Publish a SavedModel directory or tarball as ``PREFIX/<model>/<version>/``.

Files upload in parallel, each upload's CRC32C is checked against the local file, and the
marker is written last, so a reader that trusts the marker never sees a partial version.
Nothing is written before every check has passed: a bad name, a directory that is not a
SavedModel, an unsafe tarball or an existing version leave the bucket unchanged.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from modelsync.layout import TARBALL_NAME, model_name_problem, parse_version, version_prefix
from modelsync.savedmodel import (
    DEFAULT_MAX_TAR_BYTES,
    TarballError,
    check_tarball,
    local_files,
    local_savedmodel_problem,
)
from modelsync.store import GCSStore, PreconditionFailed, StoreError


class PublishError(Exception):
    """Publishing was refused or failed; the message is one line for the user."""


@dataclass(frozen=True)
class Published:
    model: str
    version: int
    files: int
    bytes: int
    seconds: float
    uri: str


def next_version(store: GCSStore, prefix: str, model: str) -> int:
    base = f"{prefix}/{model}/" if prefix else f"{model}/"
    versions = []
    for p in store.list_prefixes(base):
        v = parse_version(p[len(base):].rstrip("/"))
        if v is not None:
            versions.append(v)
    return max(versions, default=0) + 1


def plan_files(path: Path, max_tar_bytes: int) -> list[tuple[str, Path]]:
    """(relative object name, local file) pairs, after checking the source is a SavedModel."""
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz")):
            raise PublishError(f"{path}: a file must be a .tar.gz of a SavedModel")
        try:
            check_tarball(path, max_tar_bytes)
        except TarballError as exc:
            raise PublishError(f"{path}: {exc}") from None
        return [(TARBALL_NAME, path)]
    if not path.exists():
        raise PublishError(f"{path}: no such file or directory")
    problem = local_savedmodel_problem(path)
    if problem:
        raise PublishError(f"{path}: not a SavedModel: {problem}")
    return [(rel, path / rel) for rel in local_files(path)]


def publish(store: GCSStore, path: str | os.PathLike[str], model: str, *,
            prefix: str, marker: str, version: int | None = None, overwrite: bool = False,
            workers: int = 8, max_tar_bytes: int = DEFAULT_MAX_TAR_BYTES,
            progress: Callable[[int, int], None] | None = None) -> Published:
    started = time.monotonic()
    problem = model_name_problem(model)
    if problem:
        raise PublishError(problem)
    if version is not None and not 1 <= version < 2**63:
        raise PublishError(f"bad version {version}: want a positive 64-bit integer")
    files = plan_files(Path(path), max_tar_bytes)
    total_bytes = sum(local.stat().st_size for _, local in files)
    try:
        if version is None:
            version = next_version(store, prefix, model)
        base = version_prefix(prefix, model, version)
        existing = store.list_objects(base)
        if existing and not overwrite:
            raise PublishError(f"gs://{store.settings.bucket}/{base} already exists "
                               f"({len(existing)} objects); use --overwrite to replace it")
        if existing:
            # Marker first, so no reader trusts the old version while it is replaced.
            for obj in sorted(existing, key=lambda o: not o.name.endswith("/" + marker)):
                store.delete(obj.name)
        done_bytes = 0
        lock = threading.Lock()

        def put(item: tuple[str, Path]) -> None:
            nonlocal done_bytes
            rel, local = item
            store.upload(base + rel, str(local), if_generation_match=0)
            with lock:
                done_bytes += local.stat().st_size
                if progress:
                    progress(done_bytes, total_bytes)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(put, files))
        marker_doc = {"model": model, "version": version, "files": len(files),
                      "bytes": total_bytes, "published_at": time.time()}
        store.write(base + marker, json.dumps(marker_doc).encode(), if_generation_match=0,
                    content_type="application/json")
    except PreconditionFailed as exc:
        raise PublishError(f"version {version} of {model} was written concurrently by someone "
                           f"else: {exc}") from None
    except StoreError as exc:
        raise PublishError(f"upload failed: {exc}") from None
    return Published(model=model, version=version, files=len(files), bytes=total_bytes,
                     seconds=time.monotonic() - started,
                     uri=f"gs://{store.settings.bucket}/{base}")


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
        line = (f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {frac:6.1%} "
                f"{done / 2**20:8.1f}/{total / 2**20:.1f} MiB")
        self.stream.write(line)
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
