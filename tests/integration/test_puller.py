"""remote_model_puller against fake-gcs-server with real SavedModels and a real model root."""

from __future__ import annotations

import dataclasses
import io
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import wait_for
from puller_kit import events, make_puller, same_tree

from modelsync.catalog import build_catalog, catalog_object, dump_catalog, policy_object
from modelsync.dev.emulator import GCSEmulator
from modelsync.layout import SettleTracker, parse_listing
from modelsync.local import LocalLayout
from modelsync.policy import ModelPolicy, Policy, dump_policy
from modelsync.publish import publish
from modelsync.savedmodel import local_files
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from remote_model_puller.installer import InstallError

pytestmark = pytest.mark.integration


def test_v1_then_v2_installed_byte_identical(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    puller = make_puller(store_settings, root)
    try:
        assert puller.tick().ok  # empty bucket: nothing to do
        assert LocalLayout(root).versions_on_disk() == {}
        publish(store, model_factory(2.0, shards=3), "ranker")
        result = puller.tick()
        assert result.installed == [("ranker", 1)] and result.source == "listing"
        assert same_tree(model_factory(2.0, shards=3), root / "ranker" / "1")
        record = LocalLayout(root).read_record("ranker", 1)
        assert record is not None and record.bytes == sum(
            (root / "ranker" / "1" / f).stat().st_size for f in local_files(root / "ranker" / "1")
        )
        publish(store, model_factory(3.0), "ranker")
        assert puller.tick().installed == [("ranker", 2)]
        assert same_tree(model_factory(3.0), root / "ranker" / "2")
        assert (root / "ranker" / "1").is_dir()  # the puller never deletes: v1 stays
        assert puller.tick().installed == []  # idle
        assert list((root / ".modelsync" / "incoming").iterdir()) == []
    finally:
        puller.close()


def test_unmarked_upload_in_progress_waits_until_whole_and_settled(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    src = model_factory(2.0, shards=2)
    files = local_files(src)
    last_shard = "variables/variables.data-00001-of-00002"
    for rel in files:
        if rel != last_shard:
            store.upload(f"models/m/1/{rel}", str(src / rel))
    puller = make_puller(store_settings, tmp_path / "root", settle_s=1.0)
    try:
        assert puller.tick().installed == []  # a shard is missing: not a whole SavedModel
        store.upload(f"models/m/1/{last_shard}", str(src / last_shard))
        assert puller.tick().installed == []  # whole, but its listing has not settled
        wait_for(lambda: puller.tick().installed == [("m", 1)], 30, "installed once settled")
        assert same_tree(src, tmp_path / "root" / "m" / "1")
    finally:
        puller.close()


def test_object_replaced_or_corrupt_after_listing_is_rejected(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    publish(store, model_factory(2.0, shards=2), "m")
    root = tmp_path / "root"
    puller = make_puller(store_settings, root)
    try:
        listing = parse_listing(store.list_objects("models/"), "models", "_READY")
        rv = listing.version("m", 1)
        assert rv is not None
        # 1. the object is rewritten after the listing: its listed generation is gone
        store.write("models/m/1/variables/variables.index", b"tampered")
        with pytest.raises(InstallError) as info:
            puller.installer.install("m", 1, rv.fingerprint, rv)
        assert info.value.kind == "changed"
        # 2. the bytes do not match the listed CRC32C (corruption in transit or at rest); the
        # marker becomes a plain one, so the manifest check (a test of its own) stays out
        store.write("models/m/1/_READY", b"")
        listing = parse_listing(store.list_objects("models/"), "models", "_READY")
        rv = listing.version("m", 1)
        assert rv is not None
        bad = tuple(
            dataclasses.replace(f, crc32c="AAAAAA==") if f.path == "saved_model.pb" else f
            for f in rv.files
        )
        with pytest.raises(InstallError) as info:
            puller.installer.install("m", 1, rv.fingerprint, dataclasses.replace(rv, files=bad))
        assert info.value.kind == "checksum"
        # 3. the catalog promises other content than the bucket holds
        with pytest.raises(InstallError) as info:
            puller.installer.install("m", 1, "0" * 32, None)
        assert info.value.kind == "changed"
        assert not (root / "m").exists() or list((root / "m").iterdir()) == []
        assert list((root / ".modelsync" / "incoming").iterdir()) == []
    finally:
        puller.close()


def tar_bytes(members: list[tuple[str, bytes]], evil: tarfile.TarInfo | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if evil is not None:
            tar.addfile(evil)
    return buf.getvalue()


def test_tarballs_good_installed_malicious_rejected_bad_names_skipped(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    src = model_factory(2.0)
    members = [(rel, (src / rel).read_bytes()) for rel in local_files(src)]
    store.write("models/tarred/1/model.tar.gz", tar_bytes(members))
    store.write("models/tarred/1/_READY", b"{}")
    link = tarfile.TarInfo("variables/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    store.write("models/evil/1/model.tar.gz", tar_bytes(members, link))
    store.write("models/evil/1/_READY", b"{}")
    store.write("models/bad name/1/saved_model.pb", b"x")
    store.write("models/bad name/1/_READY", b"x")
    publish(store, src, "good")
    root = tmp_path / "root"
    puller = make_puller(store_settings, root)
    try:
        result = puller.tick()
        assert sorted(result.installed) == [("good", 1), ("tarred", 1)]
        assert result.failed == [("evil", 1, "tarball")]
        assert same_tree(src, root / "tarred" / "1")
        assert not (root / "evil").exists() or list((root / "evil").iterdir()) == []
        assert not Path("/etc/passwd").is_symlink()
        skipped = events(puller, "object_skipped")
        assert [e["path"] for e in skipped] == ["models/bad name/"]
        # the failure backs off: the next tick does not hammer it
        assert puller.tick().failed == []
    finally:
        puller.close()


def test_policy_pin_and_malformed_policy(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    for a in (2.0, 3.0, 4.0):
        publish(store, model_factory(a), "m")
    root = tmp_path / "root"
    puller = make_puller(store_settings, root)
    try:
        assert puller.tick().installed == [("m", 3)]
        store.write(policy_object("models"), dump_policy(Policy(models={"m": ModelPolicy(pin=1)})))
        assert puller.tick().installed == [("m", 1)]
        store.write(policy_object("models"), b'{"schema": 1, "models": {"m": {"pin": "two"}}}')
        assert puller.tick().ok
        assert events(puller, "policy_malformed")
        assert puller.view.poll().policy.for_model("m").pin == 1  # the last good copy holds
        # and survives a restart (kept on local disk)
        puller.close()
        puller = make_puller(store_settings, root)
        assert puller.view.poll().policy.for_model("m").pin == 1
    finally:
        puller.close()


def test_gcs_down_keeps_what_is_installed(model_factory, tmp_path: Path) -> None:
    with GCSEmulator() as emu:
        settings = StoreSettings(
            bucket="down", emulator_host=emu.url, timeout_s=1, retry_deadline_s=1
        )
        store = GCSStore(settings)
        store.ensure_bucket()
        publish(store, model_factory(2.0), "m")
        puller = make_puller(settings, tmp_path / "root")
        try:
            assert puller.tick().installed == [("m", 1)]
            emu.stop()
            result = puller.tick()
            assert not result.ok and result.error
            assert events(puller, "poll_failed")
            assert same_tree(model_factory(2.0), tmp_path / "root" / "m" / "1")
        finally:
            puller.close()


def write_catalog(store: GCSStore, listed_at: float) -> int:
    listing = parse_listing(store.list_objects("models/"), "models", "_READY")
    catalog = build_catalog(listing, SettleTracker(3600), time.time(), "models")
    info = store.write(
        catalog_object("models"), dump_catalog(catalog), metadata={"listed_at": str(listed_at)}
    )
    return info.generation


@pytest.mark.slow
def test_idle_poll_storage_calls_with_fresh_and_stale_catalog(
    store: GCSStore, store_settings: StoreSettings, tmp_path: Path
) -> None:
    names = []
    for m in range(200):
        for v in range(1, 6):
            base = f"models/model{m:03d}/{v}/"
            names += [
                base + "saved_model.pb",
                base + "variables/variables.index",
                base + "variables/variables.data-00000-of-00001",
                base + "_READY",
            ]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: store.write(n, b"x"), names))
    generation = write_catalog(store, time.time())
    puller = make_puller(
        store_settings, tmp_path / "root", download_workers=16, max_concurrent_installs=8
    )
    try:
        first = puller.tick()
        assert first.source == "catalog" and len(first.installed) == 200  # newest of each
        puller.store.calls.clear()
        idle = puller.tick()
        assert idle.installed == [] and idle.source == "catalog"
        # two metadata reads, no listing:
        assert idle.calls == 2 and puller.store.calls == {"stat": 2}
        # the master stops refreshing: the catalog goes stale and the node lists for itself
        store.patch_metadata(catalog_object("models"), {"listed_at": str(time.time() - 3600)})
        puller.store.calls.clear()
        stale = puller.tick()
        assert stale.source == "listing" and stale.installed == []
        assert puller.store.calls["list"] == 5  # 4,001 objects in pages of 1,000, fields projected
        assert stale.calls == 2 + 5
        assert events(puller, "catalog_fallback")
        # fresh again (same body, same generation): back to two metadata reads
        store.patch_metadata(catalog_object("models"), {"listed_at": str(time.time())})
        assert store.stat(catalog_object("models")).generation == generation  # type: ignore[union-attr]
        puller.store.calls.clear()
        back = puller.tick()
        assert back.source == "catalog" and back.calls == 2 and puller.store.calls == {"stat": 2}
        assert events(puller, "catalog_fresh_again")
    finally:
        puller.close()
