"""``MemoryStore``: the ``RemoteStore`` protocol in memory, with generations and
``if_generation_match`` preconditions as GCS has them. For unit tests of the code above the
store (the master's routes, the planners' callers); integration tests use fake-gcs-server."""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import BinaryIO

from modelsync.checksums import crc32c_b64
from modelsync.layout import ObjectInfo
from modelsync.store import ChecksumMismatch, NotFound, PreconditionFailed


@dataclass
class _Object:
    data: bytes
    info: ObjectInfo


class MemoryStore:
    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self._objects: dict[str, _Object] = {}
        self._generations = itertools.count(1_000_000)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        yield  # memory never hangs

    def _get(self, name: str, generation: int | None = None) -> _Object:
        obj = self._objects.get(name)
        if obj is None or (generation is not None and obj.info.generation != generation):
            raise NotFound(f"{name} (generation {generation}) not found")
        return obj

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        self.calls["list"] += 1
        with self._lock:
            return [o.info for n, o in sorted(self._objects.items()) if n.startswith(prefix)]

    def list_prefixes(self, prefix: str) -> list[str]:
        self.calls["list"] += 1
        with self._lock:
            return sorted(
                {
                    prefix + n[len(prefix) :].split("/", 1)[0] + "/"
                    for n in self._objects
                    if n.startswith(prefix) and "/" in n[len(prefix) :]
                }
            )

    def stat(self, name: str) -> ObjectInfo | None:
        self.calls["stat"] += 1
        with self._lock:
            obj = self._objects.get(name)
            return None if obj is None else obj.info

    def read(self, name: str, generation: int | None = None) -> bytes:
        self.calls["read"] += 1
        with self._lock:
            return self._get(name, generation).data

    def download(
        self,
        name: str,
        fh: BinaryIO,
        *,
        generation: int | None = None,
        expected_crc32c: str | None = None,
        chunk_bytes: int = 1 << 20,
    ) -> int:
        self.calls["download"] += 1
        with self._lock:
            obj = self._get(name, generation)
        if expected_crc32c is not None and obj.info.crc32c != expected_crc32c:
            raise ChecksumMismatch(f"{name}: crc32c {obj.info.crc32c} != {expected_crc32c}")
        fh.write(obj.data)
        return len(obj.data)

    def write(
        self,
        name: str,
        data: bytes,
        *,
        if_generation_match: int | None = None,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        self.calls["write"] += 1
        with self._lock:
            current = self._objects.get(name)
            if if_generation_match is not None:
                have = 0 if current is None else current.info.generation
                if have != if_generation_match:
                    raise PreconditionFailed(
                        f"{name}: generation {have}, not {if_generation_match}"
                    )
            info = ObjectInfo(
                name,
                next(self._generations),
                len(data),
                crc32c_b64(data),
                metadata=dict(metadata or {}),
                updated=time.time(),
            )
            self._objects[name] = _Object(bytes(data), info)
            return info

    def upload(self, name: str, path: str, *, if_generation_match: int | None = None) -> ObjectInfo:
        with open(path, "rb") as fh:
            return self.write(name, fh.read(), if_generation_match=if_generation_match)

    def patch_metadata(self, name: str, metadata: Mapping[str, str]) -> ObjectInfo:
        self.calls["patch"] += 1
        with self._lock:
            obj = self._get(name)
            obj.info = replace(obj.info, metadata={**(obj.info.metadata or {}), **metadata})
            return obj.info

    def delete(self, name: str, *, if_generation_match: int | None = None) -> None:
        self.calls["delete"] += 1
        with self._lock:
            obj = self._get(name)
            if if_generation_match is not None and obj.info.generation != if_generation_match:
                raise PreconditionFailed(f"{name}: generation {obj.info.generation}")
            del self._objects[name]
