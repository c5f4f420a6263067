"""The installer's one-pass tarball path (download streamed into the checked extraction) and its
manifest check, on the in-memory store: every failure leaves nothing, and says what it was."""

from __future__ import annotations

import io
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import pytest

from modelsync.checksums import crc32c_b64
from modelsync.dev.memstore import MemoryStore
from modelsync.local import LocalLayout
from modelsync.manifest import Publisher, build_manifest, dump_manifest
from modelsync.settings import StoreSettings
from modelsync.store import StoreError
from remote_model_puller.installer import Installer, InstallError

GOOD = {
    "saved_model.pb": b"pb",
    "variables/variables.index": b"ix",
    "variables/variables.data-00000-of-00001": bytes(range(256)) * 4096,
}
SETTINGS = StoreSettings(bucket="b")


def tar_bytes(members: dict[str, bytes], evil: tarfile.TarInfo | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if evil is not None:
            tar.addfile(evil)
    return buf.getvalue()


class FlakyStore(MemoryStore):
    """Fails the first ``failures`` downloads halfway through."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def download(self, name: str, fh: BinaryIO, **kwargs: object) -> int:  # type: ignore[override]
        if self.failures > 0:
            self.failures -= 1
            data = self.read(name)
            fh.write(data[: len(data) // 2])
            raise StoreError(f"{name}: connection reset")
        return super().download(name, fh, **kwargs)  # type: ignore[arg-type]


def setup(
    store: MemoryStore, tmp_path: Path, data: bytes, marker: bytes | None = b""
) -> tuple[Installer, ThreadPoolExecutor]:
    store.write("models/t/1/model.tar.gz", data)
    if marker is not None:
        store.write("models/t/1/_READY", marker)
    layout = LocalLayout(tmp_path / "root")
    layout.ensure()
    pool = ThreadPoolExecutor(2)
    return Installer(store, SETTINGS, layout, pool, max_tar_bytes=1 << 30), pool


def install(installer: Installer) -> None:
    rv = installer.list_version("t", 1)
    installer.install("t", 1, rv.fingerprint, rv)


def left_behind(tmp_path: Path) -> list[str]:
    root = tmp_path / "root"
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() or (p.is_dir() and p.parent == root / "t")
    )


def test_streams_into_place_verified_by_its_manifest(tmp_path: Path) -> None:
    store = MemoryStore()
    data = tar_bytes(GOOD)
    manifest = build_manifest([("model.tar.gz", len(data), crc32c_b64(data))], Publisher(), 0.0)
    installer, pool = setup(store, tmp_path, data, dump_manifest(manifest))
    with pool:
        install(installer)
    record = installer.layout.read_record("t", 1)
    assert record is not None and record.manifest_verified and record.bytes == len(data)
    assert {n: (tmp_path / "root/t/1" / n).read_bytes() for n in GOOD} == GOOD
    assert list(installer.layout.incoming.iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "evil", "damage"),
    [
        ("tarball", "link", None),
        ("tarball", None, "truncate"),
        ("checksum", None, "listing-crc"),
    ],
)
def test_failures_leave_nothing(
    tmp_path: Path, kind: str, evil: str | None, damage: str | None
) -> None:
    store = MemoryStore()
    link = None
    if evil:
        link = tarfile.TarInfo("variables/evil")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    data = tar_bytes(GOOD, link)
    if damage == "truncate":
        data = data[: len(data) // 2]
    installer, pool = setup(store, tmp_path, data)
    with pool, pytest.raises(InstallError) as info:
        rv = installer.list_version("t", 1)
        if damage == "listing-crc":
            import dataclasses

            rv = dataclasses.replace(
                rv, files=(dataclasses.replace(rv.files[0], crc32c="AAAAAA=="),)
            )
        installer.install("t", 1, rv.fingerprint, rv)
    assert info.value.kind == kind, info.value
    assert left_behind(tmp_path) == []


def test_a_transient_failure_mid_stream_starts_over(tmp_path: Path) -> None:
    store = FlakyStore(failures=1)
    installer, pool = setup(store, tmp_path, tar_bytes(GOOD))
    with pool:
        install(installer)
    assert {n: (tmp_path / "root/t/1" / n).read_bytes() for n in GOOD} == GOOD
    store = FlakyStore(failures=5)
    installer, pool = setup(store, tmp_path / "again", tar_bytes(GOOD))
    with pool, pytest.raises(InstallError) as info:
        install(installer)
    assert info.value.kind == "store" and "connection reset" in str(info.value)
    assert left_behind(tmp_path / "again") == []


def test_stop_abandons_a_stream(tmp_path: Path) -> None:
    stop = threading.Event()
    store = MemoryStore()
    installer, pool = setup(store, tmp_path, tar_bytes(GOOD))
    installer.stop = stop
    stop.set()
    with pool, pytest.raises(InstallError) as info:
        install(installer)
    assert info.value.kind == "stopped"
    assert left_behind(tmp_path) == []


def test_manifest_mismatch_downloads_nothing(tmp_path: Path) -> None:
    store = MemoryStore()
    data = tar_bytes(GOOD)
    manifest = build_manifest([("model.tar.gz", len(data) + 1, crc32c_b64(data))], Publisher(), 0.0)
    installer, pool = setup(store, tmp_path, data, dump_manifest(manifest))
    store.calls.clear()
    with pool, pytest.raises(InstallError) as info:
        install(installer)
    assert info.value.kind == "manifest_mismatch"
    assert f"model.tar.gz size {len(data)} != {len(data) + 1} in the manifest" in str(info.value)
    assert "download" not in store.calls and store.calls["read"] == 1
    assert left_behind(tmp_path) == []
