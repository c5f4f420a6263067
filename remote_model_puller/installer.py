"""Atomic, verified installs of one model version.

Files download in parallel (bounded by a shared pool) and stream to disk inside
``MODEL_ROOT/.modelsync/incoming/<random>/`` on the same filesystem; every read is pinned to the
generation that was listed and every file's CRC32C is checked against the bucket's. A version
whose marker carries a manifest (``modelsync.manifest``) is downloaded only when its listing
matches it file for file. A tarball streams from the bucket through one checked extraction pass
(``remote_model_puller.pipe``; its checksum is known at the end of the stream, and the
extraction is discarded on any failure). Only a whole SavedModel is moved into
``MODEL_ROOT/<model>/<version>/``, by one ``rename`` (or an atomic exchange when a changed
version replaces the old copy), then fsync'd and recorded. Any failure removes the download:
nothing partial is ever visible.
"""

from __future__ import annotations

import copy
import errno
import os
import random
import shutil
import threading
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, wait
from pathlib import Path

from modelsync.layout import RemoteFile, RemoteVersion, version_prefix
from modelsync.local import (
    InstalledFile,
    InstallRecord,
    LocalLayout,
    atomic_write,
    exchange,
    file_crc32c_b64,
    fsync_dir,
)
from modelsync.log import get_logger
from modelsync.manifest import ManifestError, parse_manifest
from modelsync.savedmodel import (
    DEFAULT_MAX_TAR_MEMBERS,
    TarballError,
    extract_tarball,
    local_savedmodel_problem,
)
from modelsync.settings import StoreSettings
from modelsync.store import ChecksumMismatch, NotFound, RemoteStore, StoreError, list_bucket
from remote_model_puller.pipe import ChunkPipe, PipeAbandoned, PipeStopped

log = get_logger("puller")
FILE_ATTEMPTS = 3


class InstallError(Exception):
    """An install failed; nothing was installed. ``kind`` names the cause for events/metrics."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Stopped(InstallError):
    def __init__(self) -> None:
        super().__init__("stopped", "stopping: download abandoned")


class Installer:
    def __init__(
        self,
        store: RemoteStore,
        settings: StoreSettings,
        layout: LocalLayout,
        pool: ThreadPoolExecutor | None,
        *,
        max_tar_bytes: int,
        max_tar_members: int = DEFAULT_MAX_TAR_MEMBERS,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.layout = layout
        self.pool = pool
        self.max_tar_bytes = max_tar_bytes
        self.max_tar_members = max_tar_members
        self.stop = stop or threading.Event()

    def for_install(self, stop: threading.Event, pool: ThreadPoolExecutor) -> Installer:
        """This installer for one install: ``stop`` cancels it (between chunks; its work
        directory is removed), ``pool`` downloads its files."""
        one = copy.copy(self)
        one.stop, one.pool = stop, pool
        return one

    def list_version(self, model: str, version: int) -> RemoteVersion:
        rv = list_bucket(self.store, self.settings, model, version).version(model, version)
        if rv is None or not rv.files:
            raise InstallError("vanished", f"{model}/{version}: no objects in the bucket")
        return rv

    def install(
        self, model: str, version: int, fingerprint: str, listing: RemoteVersion | None = None
    ) -> InstallRecord:
        if self.pool is None:  # no pool given: one for this install
            with ThreadPoolExecutor(8, thread_name_prefix="download") as pool:
                return self.for_install(self.stop, pool).install(
                    model, version, fingerprint, listing
                )
        started = time.monotonic()
        rv = listing or self.list_version(model, version)
        if rv.fingerprint != fingerprint:
            raise InstallError(
                "changed",
                f"{model}/{version}: the bucket changed since it was "
                "cataloged; waiting for the catalog to catch up",
            )
        problem = rv.problem()
        if problem:
            raise InstallError("incomplete", f"{model}/{version}: {problem}")
        verified = self.check_manifest(rv)
        target = self.layout.version_dir(model, version)
        if target.exists() and self.layout.read_record(model, version) is None:
            adopted = self._adopt(rv, target, started, verified)
            if adopted is not None:
                return adopted
        work = self.layout.new_incoming()
        try:
            content = work / "content"
            content.mkdir()
            if rv.is_tarball:
                total = self._fetch_tarball(rv, content)
            else:
                total = self._download_all(rv, content)
            problem = local_savedmodel_problem(content)
            if problem:
                raise InstallError(
                    "incomplete",
                    f"{model}/{version}: downloaded content is not a whole SavedModel: {problem}",
                )
            _fsync_tree(content)
            record = self._record(rv, total, started, verified)
            self._move_into_place(content, target, work)
            atomic_write(self.layout.record_path(model, version), record.to_json())
            return record
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InstallError("disk_full", f"{model}/{version}: disk full: {exc}") from None
            raise InstallError("io", f"{model}/{version}: {exc}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # --- steps ---------------------------------------------------------------------------------
    def check_manifest(self, rv: RemoteVersion) -> bool:
        """Read the marker (one read, pinned to its listed generation): True when it carries a
        manifest the listing matches; False when there is no marker or it carries none (the
        rules before manifests apply); InstallError ``manifest_mismatch`` otherwise."""
        if rv.marker_generation is None:
            return False
        name = version_prefix(self.settings.prefix, rv.model, rv.version) + self.settings.marker
        try:
            data = self.store.read(name, generation=rv.marker_generation)
        except NotFound:
            raise InstallError(
                "changed",
                f"{name}: generation {rv.marker_generation} is gone "
                "(the marker was replaced or deleted after listing)",
            ) from None
        except StoreError as exc:
            raise InstallError("store", f"{name}: {exc}") from None
        try:
            manifest = parse_manifest(data)
        except ManifestError as exc:
            raise InstallError("manifest_mismatch", f"{rv.model}/{rv.version}: {exc}") from None
        if manifest is None:
            return False
        problem = manifest.mismatch(rv.files)
        if problem:
            raise InstallError("manifest_mismatch", f"{rv.model}/{rv.version}: {problem}")
        return True

    def _download_all(self, rv: RemoteVersion, dest: Path) -> int:
        failed = threading.Event()
        assert self.pool is not None
        futures: list[Future[int]] = [
            self.pool.submit(self._download_one, rv, f, dest, failed) for f in rv.files
        ]
        error: BaseException | None = None
        total = 0
        for fut in futures:
            try:
                total += fut.result()
            except CancelledError:
                pass
            except BaseException as exc:  # keep the first error; stop the other downloads
                if error is None:
                    error = exc
                    failed.set()
                    for other in futures:
                        other.cancel()
        wait(futures)  # nothing may still write into the work dir once we return
        if error is not None:
            if isinstance(error, InstallError | OSError):  # OSError: install() names it
                raise error
            raise InstallError("store", f"{rv.model}/{rv.version}: {error}") from error
        return total

    def _download_one(
        self, rv: RemoteVersion, f: RemoteFile, dest: Path, failed: threading.Event
    ) -> int:
        if self.stop.is_set():
            raise Stopped()
        if failed.is_set():
            raise InstallError("aborted", "another file of this version failed")
        path = dest / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        name = version_prefix(self.settings.prefix, rv.model, rv.version) + f.path
        attempts = 0
        while True:
            attempts += 1
            try:
                with open(path, "wb" if attempts > 1 else "xb") as raw:
                    fh = _AbortableWriter(raw, self.stop, failed)
                    n = self.store.download(
                        name,
                        fh,  # type: ignore[arg-type]
                        generation=f.generation,
                        expected_crc32c=f.crc32c,
                    )
                    raw.flush()
                    os.fsync(raw.fileno())
                break
            except StoreError as exc:
                self._retry_or_fail(exc, name, f, attempts, failed.is_set())
                time.sleep(min(5.0, 0.2 * 2**attempts) * random.uniform(0.5, 1.0))
        if n != f.size:
            raise InstallError("truncated", f"{name}: got {n} bytes, expected {f.size}")
        return n

    def _fetch_tarball(self, rv: RemoteVersion, dest: Path) -> int:
        """Download ``model.tar.gz`` and extract it into ``dest`` in one streaming pass (a pool
        thread downloads into a pipe, this one extracts from it). Returns the bytes downloaded."""
        f = rv.files[0]
        name = version_prefix(self.settings.prefix, rv.model, rv.version) + f.path
        attempts = 0
        while True:
            attempts += 1
            pipe = ChunkPipe(self.stop)
            assert self.pool is not None
            fut = self.pool.submit(self._produce, name, f, pipe)
            error: BaseException | None = None
            try:
                extract_tarball(pipe, dest, self.max_tar_bytes, max_members=self.max_tar_members)
                pipe.drain()  # trailing blocks: the whole object passes the checksum
            except BaseException as exc:  # decided below, once the download has ended
                error = exc
            finally:
                pipe.abandon()
            try:
                n = fut.result()
            except (PipeAbandoned, PipeStopped):
                n = -1  # the extraction gave up (or we stop): its error is the one to report
            except CancelledError:
                raise Stopped() from None
            except StoreError as exc:
                self._retry_or_fail(exc, name, f, attempts)
                for child in list(dest.iterdir()):
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
                time.sleep(min(5.0, 0.2 * 2**attempts) * random.uniform(0.5, 1.0))
                continue
            except InstallError:
                raise
            except Exception as exc:
                raise InstallError("store", f"{name}: {exc}") from exc
            if isinstance(error, PipeStopped) or self.stop.is_set():
                raise Stopped()
            if isinstance(error, TarballError):
                raise InstallError("tarball", f"{rv.model}/{rv.version}: {error}") from None
            if error is not None:
                raise error  # an OSError (install() names it) or a bug
            if n != f.size:
                raise InstallError("truncated", f"{name}: got {n} bytes, expected {f.size}")
            return n

    def _retry_or_fail(
        self, exc: StoreError, name: str, f: RemoteFile, attempts: int, given_up: bool = False
    ) -> None:
        """Raise the InstallError a failed download is, or return to try the file again: a
        transient failure of one file is retried a bounded number of times before the whole
        version fails (which then backs off)."""
        if isinstance(exc, NotFound):
            raise InstallError(
                "changed",
                f"{name}: generation {f.generation} is gone (the "
                "object was replaced or deleted after listing)",
            ) from None
        if isinstance(exc, ChecksumMismatch):
            raise InstallError("checksum", str(exc)) from None
        if attempts >= FILE_ATTEMPTS or self.stop.is_set() or given_up:
            raise InstallError("store", str(exc)) from None
        log.warning("download_retry", object=name, attempt=attempts, error=str(exc))

    def _produce(self, name: str, f: RemoteFile, pipe: ChunkPipe) -> int:
        try:
            return self.store.download(
                name,
                pipe,  # type: ignore[arg-type]
                generation=f.generation,
                expected_crc32c=f.crc32c,
            )
        finally:
            pipe.close()

    def _record(
        self, rv: RemoteVersion, total: int, started: float, verified: bool = False
    ) -> InstallRecord:
        return InstallRecord(
            model=rv.model,
            version=rv.version,
            fingerprint=rv.fingerprint,
            source=f"gs://{self.settings.bucket}/"
            f"{version_prefix(self.settings.prefix, rv.model, rv.version)}",
            bytes=total,
            installed_at=time.time(),
            seconds=round(time.monotonic() - started, 3),
            files=tuple(InstalledFile(f.path, f.generation, f.size, f.crc32c) for f in rv.files),
            manifest_verified=verified,
        )

    def _move_into_place(self, content: Path, target: Path, work: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            # A changed version replaces the old copy in one atomic swap where the kernel can;
            # the old copy ends up in the work dir and is removed with it.
            if not exchange(content, target):
                os.rename(target, work / "old")
                os.rename(content, target)
        else:
            os.rename(content, target)
        fsync_dir(target.parent)

    def _adopt(
        self, rv: RemoteVersion, target: Path, started: float, verified: bool
    ) -> InstallRecord | None:
        """A version directory without a record (a crash after the rename, or a copy made by
        hand): keep it if every file matches the bucket, byte for byte by CRC32C."""
        if rv.is_tarball:
            return None
        try:
            from modelsync.savedmodel import local_files

            if set(local_files(target)) != {f.path for f in rv.files}:
                return None
            for f in rv.files:
                if file_crc32c_b64(str(target / f.path)) != f.crc32c:
                    return None
        except (OSError, ValueError):
            return None
        record = self._record(rv, rv.bytes, started, verified)
        atomic_write(self.layout.record_path(rv.model, rv.version), record.to_json())
        log.info("version_adopted", model=rv.model, version=rv.version)
        return record


class _AbortableWriter:
    """Lets a SIGTERM or a failed sibling download stop a large download between chunks."""

    def __init__(self, fh: object, stop: threading.Event, failed: threading.Event) -> None:
        self._fh = fh
        self._stop = stop
        self._failed = failed

    def write(self, data: bytes) -> int:
        if self._stop.is_set():
            raise Stopped()
        if self._failed.is_set():
            raise InstallError("aborted", "another file of this version failed")
        return self._fh.write(data)  # type: ignore[attr-defined, no-any-return]

    def flush(self) -> None:
        self._fh.flush()  # type: ignore[attr-defined]


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, _filenames in os.walk(root):
        fsync_dir(Path(dirpath))
