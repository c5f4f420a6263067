"""Object storage behind a small interface: ``RemoteStore``, and its GCS implementation.

Every call has a deadline (``timeout_s`` per request) and bounded retries with jittered
exponential backoff on transient errors (``retry_deadline_s`` in all). Library exceptions are
translated into this module's errors. ``calls`` counts storage requests, for metrics and
benchmarks (one per request: a listing page, a metadata read, a download, an upload).
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, Protocol

from modelsync.checksums import Crc32cWriter, crc32c_b64
from modelsync.gcs_http import rfc3339, unreachable_reason, widen_pool
from modelsync.layout import BucketListing, ObjectInfo, parse_listing, prefix_dir, version_prefix
from modelsync.local import file_crc32c_b64
from modelsync.settings import SettingsError, StoreSettings

LIST_FIELDS = "items(name,generation,size,crc32c,md5Hash,metadata,updated),nextPageToken,prefixes"


class StoreError(Exception):
    """A storage call failed (after its retries)."""


class NotFound(StoreError):
    pass


class BucketNotFound(NotFound):
    """The bucket itself does not exist (a setting is wrong: no retry mends it)."""


class PreconditionFailed(StoreError):
    """An ``if_generation_match`` condition did not hold: someone else wrote first."""


class ChecksumMismatch(StoreError):
    pass


class RemoteStore(Protocol):
    calls: collections.Counter[str]

    def list_objects(self, prefix: str) -> list[ObjectInfo]: ...
    def list_prefixes(self, prefix: str) -> list[str]: ...
    def stat(self, name: str) -> ObjectInfo | None: ...
    def read(self, name: str, generation: int | None = None) -> bytes: ...
    def download(
        self,
        name: str,
        fh: BinaryIO,
        *,
        generation: int | None = None,
        expected_crc32c: str | None = None,
        chunk_bytes: int = 1 << 20,
    ) -> int: ...
    def write(
        self,
        name: str,
        data: bytes,
        *,
        if_generation_match: int | None = None,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo: ...
    def upload(
        self, name: str, path: str, *, if_generation_match: int | None = None
    ) -> ObjectInfo: ...
    def patch_metadata(self, name: str, metadata: Mapping[str, str]) -> ObjectInfo: ...
    def delete(self, name: str, *, if_generation_match: int | None = None) -> None: ...
    def deadline(self, seconds: float) -> contextlib.AbstractContextManager[None]:
        """Every call of this thread inside the block ends (retries included) by then."""
        ...


def list_bucket(
    store: RemoteStore,
    settings: StoreSettings,
    model: str | None = None,
    version: int | None = None,
) -> BucketListing:
    """One listing of the prefix (or of one model, or one version), grouped into versions."""
    if version is not None and model is not None:
        base = version_prefix(settings.prefix, model, version)
    else:
        base = prefix_dir(settings.prefix, *([model] if model else []))
    return parse_listing(store.list_objects(base), settings.prefix, settings.marker)


def require_bucket(settings: StoreSettings, timeout_s: float = 10.0) -> str | None:
    """A daemon's check at start: SettingsError when the bucket does not exist (a 404: a wrong
    setting, which no retry mends); when the store cannot be reached now (transient), why — the
    daemon starts and its loop keeps retrying; None when the bucket answered."""
    try:
        GCSStore(settings).check_reachable(min(timeout_s, settings.timeout_s))
    except BucketNotFound as exc:
        raise SettingsError(f"MODELSYNC_BUCKET: {exc}") from None
    except StoreError as exc:
        return str(exc)
    return None


class GCSStore:
    """``RemoteStore`` on google-cloud-storage; the emulator when STORAGE_EMULATOR_HOST is set."""

    def __init__(self, settings: StoreSettings, *, pool_size: int = 32) -> None:
        from google.api_core import exceptions as gexc
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        from google.cloud.storage.retry import (
            DEFAULT_RETRY,
            ConditionalRetryPolicy,
            is_generation_specified,
        )

        self._gexc = gexc
        self.settings = settings
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._local = threading.local()
        if settings.emulator_host:
            host = settings.emulator_host
            if "://" not in host:
                host = "http://" + host
            self.endpoint = f"{host} (STORAGE_EMULATOR_HOST)"
            self.client = storage.Client(
                project="modelsync-dev",
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": host},
            )
        else:
            from google.auth.exceptions import DefaultCredentialsError

            self.endpoint = "https://storage.googleapis.com"
            try:
                self.client = storage.Client()
            except DefaultCredentialsError:
                raise SettingsError(
                    "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS to a "
                    "service-account key file (or run where application default credentials "
                    "exist), or STORAGE_EMULATOR_HOST to use a GCS emulator"
                ) from None
        widen_pool(self.client, pool_size)
        self._session = self.client._http
        self._download_base = (
            self.client._connection.API_BASE_URL or "https://storage.googleapis.com"
        ).rstrip("/")
        self.bucket = self.client.bucket(settings.bucket)
        self._timeout = (min(10.0, settings.timeout_s), settings.timeout_s)
        retry = DEFAULT_RETRY.with_delay(initial=0.2, maximum=5.0, multiplier=2.0)
        self._retry = retry.with_timeout(settings.retry_deadline_s)
        self._conditional = lambda r: ConditionalRetryPolicy(
            r, is_generation_specified, ["query_params"]
        )
        self._retry_if_gen = self._conditional(self._retry)

    # --- helpers -------------------------------------------------------------------------------
    def _count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.calls[kind] += n

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Every storage call of this thread inside the block, retries included, ends within
        ``seconds`` of entering it (a poll's overall deadline)."""
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self._local.deadline = previous

    def _limits(self, conditional: bool = False) -> tuple[tuple[float, float], Any]:
        """(timeout, retry) for one call: the settings', cut to the thread's deadline."""
        retry = self._retry_if_gen if conditional else self._retry
        deadline = getattr(self._local, "deadline", None)
        if deadline is None:
            return self._timeout, retry
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            raise StoreError(f"{self.endpoint}: the call's deadline passed before it started")
        timeout = (min(self._timeout[0], remaining), min(self._timeout[1], remaining))
        cut = self._retry.with_timeout(min(self.settings.retry_deadline_s, remaining))
        if conditional:
            return timeout, self._conditional(cut)
        return timeout, cut

    def _translate(self, exc: Exception, name: str) -> StoreError:
        g = self._gexc
        if isinstance(exc, g.NotFound):
            return NotFound(f"gs://{self.settings.bucket}/{name}: not found")
        if isinstance(exc, g.PreconditionFailed):
            return PreconditionFailed(f"gs://{self.settings.bucket}/{name}: generation changed")
        kind = type(exc).__name__
        if kind == "DataCorruption":
            return ChecksumMismatch(f"gs://{self.settings.bucket}/{name}: checksum mismatch")
        reason = unreachable_reason(exc)
        if reason is not None:
            return StoreError(f"cannot reach the storage endpoint {self.endpoint}: {reason}")
        return StoreError(f"gs://{self.settings.bucket}/{name}: {kind}: {str(exc)[:300]}")

    def check_reachable(self, timeout_s: float) -> None:
        """One quick request, no retries: StoreError naming the endpoint when it cannot be
        reached (for commands a person waits on)."""
        try:
            self.client.get_bucket(self.settings.bucket, timeout=(timeout_s, timeout_s), retry=None)
        except self._gexc.NotFound:
            raise BucketNotFound(
                f"gs://{self.settings.bucket}: no such bucket at {self.endpoint}"
            ) from None
        except self._gexc.Forbidden:
            return  # reachable; object-level rights are checked by the calls themselves
        except Exception as exc:
            raise self._translate(exc, "") from None

    def _call(self, kind: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self._count(kind)
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            raise self._translate(exc, name) from exc

    @staticmethod
    def _info(blob: Any) -> ObjectInfo:
        # the RFC 3339 text, parsed once (``blob.updated`` runs strptime at every access)
        stamp = blob._properties.get("updated")
        updated = rfc3339(stamp) if stamp else None
        return ObjectInfo(
            name=blob.name,
            generation=int(blob.generation or 0),
            size=int(blob.size or 0),
            crc32c=blob.crc32c,
            md5=blob.md5_hash,
            metadata=dict(blob.metadata) if blob.metadata else None,
            updated=updated,
        )

    # --- reads ---------------------------------------------------------------------------------
    def iter_list(self, prefix: str, page_size: int = 1000) -> Iterator[ObjectInfo]:
        try:
            timeout, retry = self._limits()
            it = self.client.list_blobs(
                self.bucket,
                prefix=prefix,
                fields=LIST_FIELDS,
                page_size=page_size,
                timeout=timeout,
                retry=retry,
            )
            for page in it.pages:
                self._count("list")
                for blob in page:
                    yield self._info(blob)
        except StoreError:
            raise
        except Exception as exc:
            raise self._translate(exc, prefix) from exc

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        return list(self.iter_list(prefix))

    def list_prefixes(self, prefix: str) -> list[str]:
        """The "directories" right under ``prefix`` (which should end with '/')."""
        try:
            timeout, retry = self._limits()
            it = self.client.list_blobs(
                self.bucket,
                prefix=prefix,
                delimiter="/",
                fields="prefixes,nextPageToken",
                timeout=timeout,
                retry=retry,
            )
            for _page in it.pages:
                self._count("list")
            return sorted(it.prefixes)
        except Exception as exc:
            raise self._translate(exc, prefix) from exc

    def stat(self, name: str) -> ObjectInfo | None:
        timeout, retry = self._limits()
        blob = self._call("stat", name, self.bucket.get_blob, name, timeout=timeout, retry=retry)
        return None if blob is None else self._info(blob)

    def read(self, name: str, generation: int | None = None) -> bytes:
        blob = self.bucket.blob(name, generation=generation)
        timeout, retry = self._limits()
        data: bytes = self._call(
            "read", name, blob.download_as_bytes, timeout=timeout, retry=retry, checksum=None
        )
        return data

    def download(
        self,
        name: str,
        fh: BinaryIO,
        *,
        generation: int | None = None,
        expected_crc32c: str | None = None,
        chunk_bytes: int = 1 << 20,
    ) -> int:
        """Stream one object into ``fh``; verify its CRC32C. Returns the bytes written.

        One streaming GET through the client's (authorized) session, read in 1 MiB chunks:
        about four times the throughput of ``Blob.download_to_file``'s small chunks, in
        constant memory. The bytes are taken as stored (no transcoding), so the CRC32C the
        listing gave is the one to match. With ``generation`` the read is pinned: a newer
        upload fails it with NotFound instead of returning different bytes.
        """
        from urllib.parse import quote

        url = (
            f"{self._download_base}/download/storage/v1/b/{quote(self.settings.bucket)}/o/"
            f"{quote(name, safe='')}?alt=media"
        )
        if generation is not None:
            url += f"&generation={generation}"
        writer = Crc32cWriter(fh)
        self._count("download")
        try:
            with self._session.get(
                url, stream=True, timeout=self._limits()[0], headers={"Accept-Encoding": "gzip"}
            ) as resp:
                if resp.status_code == 404:
                    raise NotFound(
                        f"gs://{self.settings.bucket}/{name}"
                        f"{'#' + str(generation) if generation else ''}: not found"
                    )
                if resp.status_code != 200:
                    raise StoreError(
                        f"gs://{self.settings.bucket}/{name}: HTTP "
                        f"{resp.status_code}: {resp.text[:200]}"
                    )
                for chunk in resp.raw.stream(chunk_bytes, decode_content=False):
                    writer.write(chunk)
        except StoreError:
            raise
        except Exception as exc:
            if writer.error is not None:  # the local side failed (disk full, stop): say so
                raise writer.error from None
            raise self._translate(exc, name) from exc
        if expected_crc32c is not None and writer.crc32c_b64() != expected_crc32c:
            raise ChecksumMismatch(
                f"gs://{self.settings.bucket}/{name}: crc32c {writer.crc32c_b64()} != "
                f"expected {expected_crc32c}"
            )
        return writer.bytes

    # --- writes --------------------------------------------------------------------------------
    def write(
        self,
        name: str,
        data: bytes,
        *,
        if_generation_match: int | None = None,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        blob = self.bucket.blob(name)
        if metadata:
            blob.metadata = dict(metadata)
        timeout, retry = self._limits(conditional=True)
        self._call(
            "write",
            name,
            blob.upload_from_string,
            data,
            content_type=content_type,
            if_generation_match=if_generation_match,
            timeout=timeout,
            retry=retry,
            checksum="crc32c",
        )
        info = self._info(blob)
        if info.crc32c is not None and info.crc32c != crc32c_b64(data):
            raise ChecksumMismatch(
                f"gs://{self.settings.bucket}/{name}: stored crc32c "
                f"{info.crc32c} != sent {crc32c_b64(data)}"
            )
        return info

    def upload(
        self,
        name: str,
        path: str,
        *,
        if_generation_match: int | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Upload a file and verify the CRC32C the store reports against the local file."""
        local = file_crc32c_b64(path)
        blob = self.bucket.blob(name)
        timeout, retry = self._limits(conditional=True)
        self._call(
            "write",
            name,
            blob.upload_from_filename,
            path,
            content_type=content_type,
            if_generation_match=if_generation_match,
            timeout=timeout,
            retry=retry,
            checksum="crc32c",
        )
        info = self._info(blob)
        if info.crc32c != local:
            raise ChecksumMismatch(
                f"gs://{self.settings.bucket}/{name}: stored crc32c {info.crc32c} != local {local}"
            )
        return info

    def patch_metadata(self, name: str, metadata: Mapping[str, str]) -> ObjectInfo:
        blob = self.bucket.blob(name)
        blob.metadata = dict(metadata)
        timeout, retry = self._limits()
        self._call("patch", name, blob.patch, timeout=timeout, retry=retry)
        return self._info(blob)

    def delete(self, name: str, *, if_generation_match: int | None = None) -> None:
        blob = self.bucket.blob(name)
        timeout, retry = self._limits(conditional=True)
        self._call(
            "delete",
            name,
            blob.delete,
            if_generation_match=if_generation_match,
            timeout=timeout,
            retry=retry,
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (for the emulator and demos)."""
        from google.api_core import exceptions as gexc

        try:
            self._call(
                "stat",
                self.settings.bucket,
                self.client.get_bucket,
                self.settings.bucket,
                timeout=self._timeout,
            )
        except NotFound:
            try:
                self._call(
                    "write",
                    self.settings.bucket,
                    self.client.create_bucket,
                    self.settings.bucket,
                    timeout=self._timeout,
                )
            except StoreError as exc:
                if not isinstance(exc.__cause__, gexc.Conflict):
                    raise
