"""GCSStore against a real fake-gcs-server."""

from __future__ import annotations

import io
import time

import pytest

from modelsync.settings import StoreSettings
from modelsync.store import (
    ChecksumMismatch,
    GCSStore,
    NotFound,
    PreconditionFailed,
    StoreError,
    crc32c_b64,
)

pytestmark = pytest.mark.integration


def test_write_read_stat_list(store: GCSStore) -> None:
    info = store.write("models/a/1/x.bin", b"hello", if_generation_match=0)
    assert info.generation > 0 and info.crc32c == crc32c_b64(b"hello") and info.size == 5
    assert store.read("models/a/1/x.bin") == b"hello"
    stat = store.stat("models/a/1/x.bin")
    assert stat is not None and stat.generation == info.generation and stat.crc32c == info.crc32c
    assert store.stat("models/none") is None
    store.write("models/a/2/y.bin", b"yy")
    names = [o.name for o in store.list_objects("models/")]
    assert names == ["models/a/1/x.bin", "models/a/2/y.bin"]
    assert store.list_prefixes("models/a/") == ["models/a/1/", "models/a/2/"]
    with pytest.raises(NotFound):
        store.read("models/none")


def test_generation_preconditions(store: GCSStore) -> None:
    first = store.write("p.json", b"1", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        store.write("p.json", b"2", if_generation_match=0)
    second = store.write("p.json", b"2", if_generation_match=first.generation)
    assert second.generation != first.generation
    with pytest.raises(PreconditionFailed):  # a stale read-modify-write loses
        store.write("p.json", b"3", if_generation_match=first.generation)
    assert store.read("p.json") == b"2"


def test_download_streams_and_verifies(store: GCSStore) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    info = store.write("big.bin", data)
    buf = io.BytesIO()
    n = store.download("big.bin", buf, generation=info.generation, expected_crc32c=info.crc32c)
    assert n == len(data) and buf.getvalue() == data
    with pytest.raises(ChecksumMismatch):
        store.download("big.bin", io.BytesIO(), expected_crc32c=crc32c_b64(b"other"))
    # a pinned generation that was replaced is NotFound, never different bytes
    store.write("big.bin", b"new")
    with pytest.raises(NotFound):
        store.download("big.bin", io.BytesIO(), generation=info.generation)


def test_patch_metadata_keeps_generation(store: GCSStore) -> None:
    info = store.write("c.json", b"{}")
    patched = store.patch_metadata("c.json", {"listed_at": "123"})
    again = store.stat("c.json")
    assert again is not None and again.metadata == {"listed_at": "123"}
    assert again.generation == info.generation == patched.generation


def test_calls_are_counted(store: GCSStore) -> None:
    store.write("k", b"v")
    store.calls.clear()
    store.stat("k")
    store.read("k")
    store.list_objects("")
    assert store.calls == {"stat": 1, "read": 1, "list": 1}


def test_unreachable_store_fails_within_its_deadline() -> None:
    from modelsync.dev.emulator import free_port

    settings = StoreSettings(
        bucket="b", emulator_host=f"http://127.0.0.1:{free_port()}", timeout_s=1, retry_deadline_s=2
    )
    store = GCSStore(settings)
    started = time.monotonic()
    with pytest.raises(StoreError):
        store.stat("x")
    assert time.monotonic() - started < 30  # bounded: retried, then given up
