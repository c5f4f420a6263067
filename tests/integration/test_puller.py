"""remote_model_puller against fake-gcs-server with real SavedModels and a real model root."""

from __future__ import annotations

import dataclasses
import io
import signal
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelsync.catalog import build_catalog, catalog_object, dump_catalog, policy_object
from modelsync.emulator import GCSEmulator
from modelsync.layout import SettleTracker, parse_listing
from modelsync.local import LocalLayout
from modelsync.policy import ModelPolicy, Policy, dump_policy
from modelsync.procs import ManagedProcess
from modelsync.publish import publish
from modelsync.savedmodel import local_files
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from remote_model_puller.daemon import Puller, PullerSettings
from remote_model_puller.installer import InstallError

pytestmark = pytest.mark.integration


def make_puller(store_settings: StoreSettings, root: Path, **overrides) -> Puller:  # type: ignore[no-untyped-def]
    settings = PullerSettings(store=store_settings, model_root=root, node_id="node-a",
                              settle_s=overrides.pop("settle_s", 0.5),
                              catalog_max_age_s=overrides.pop("catalog_max_age_s", 60), **overrides)
    return Puller(settings)


def same_tree(a: Path, b: Path) -> bool:
    fa, fb = local_files(a), local_files(b)
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)


def events(puller: Puller, name: str) -> list[dict]:
    return [e for e in puller.events if e["event"] == name]


def test_v1_then_v2_installed_byte_identical(store: GCSStore, store_settings: StoreSettings,
                                             model_factory, tmp_path: Path) -> None:
    root = tmp_path / "root"
    puller = make_puller(store_settings, root)
    try:
        assert puller.tick().ok  # empty bucket: nothing to do
        assert LocalLayout(root).versions_on_disk() == {}
        publish(store, model_factory(2.0, shards=3), "ranker", prefix="models", marker="_READY")
        result = puller.tick()
        assert result.installed == [("ranker", 1)] and result.source == "listing"
        assert same_tree(model_factory(2.0, shards=3), root / "ranker" / "1")
        record = LocalLayout(root).read_record("ranker", 1)
        assert record is not None and record.bytes == sum(
            (root / "ranker" / "1" / f).stat().st_size for f in local_files(root / "ranker" / "1"))
        publish(store, model_factory(3.0), "ranker", prefix="models", marker="_READY")
        assert puller.tick().installed == [("ranker", 2)]
        assert same_tree(model_factory(3.0), root / "ranker" / "2")
        assert (root / "ranker" / "1").is_dir()  # the puller never deletes: v1 stays
        assert puller.tick().installed == []  # idle
        assert list((root / ".modelsync" / "incoming").iterdir()) == []
    finally:
        puller.close()


def test_unmarked_upload_in_progress_waits_until_whole_and_settled(
        store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path) -> None:
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
        time.sleep(1.2)
        assert puller.tick().installed == [("m", 1)]
        assert same_tree(src, tmp_path / "root" / "m" / "1")
    finally:
        puller.close()


def test_object_replaced_or_corrupt_after_listing_is_rejected(
        store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path) -> None:
    publish(store, model_factory(2.0, shards=2), "m", prefix="models", marker="_READY")
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
        # 2. the bytes do not match the listed CRC32C (corruption in transit or at rest)
        listing = parse_listing(store.list_objects("models/"), "models", "_READY")
        rv = listing.version("m", 1)
        assert rv is not None
        bad = tuple(dataclasses.replace(f, crc32c="AAAAAA==") if f.path == "saved_model.pb"
                    else f for f in rv.files)
        with pytest.raises(InstallError) as info:
            puller.installer.install("m", 1, rv.fingerprint,
                                     dataclasses.replace(rv, files=bad))
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
        store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path) -> None:
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
    publish(store, src, "good", prefix="models", marker="_READY")
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


def test_policy_pin_and_malformed_policy(store: GCSStore, store_settings: StoreSettings,
                                        model_factory, tmp_path: Path) -> None:
    for a in (2.0, 3.0, 4.0):
        publish(store, model_factory(a), "m", prefix="models", marker="_READY")
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
        settings = StoreSettings(bucket="down", emulator_host=emu.url, timeout_s=1,
                                 retry_deadline_s=1)
        store = GCSStore(settings)
        store.ensure_bucket()
        publish(store, model_factory(2.0), "m", prefix="models", marker="_READY")
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
    info = store.write(catalog_object("models"), dump_catalog(catalog),
                       metadata={"listed_at": str(listed_at)})
    return info.generation


@pytest.mark.slow
def test_idle_poll_storage_calls_with_fresh_and_stale_catalog(
        store: GCSStore, store_settings: StoreSettings, tmp_path: Path) -> None:
    names = []
    for m in range(200):
        for v in range(1, 6):
            base = f"models/model{m:03d}/{v}/"
            names += [base + "saved_model.pb", base + "variables/variables.index",
                      base + "variables/variables.data-00000-of-00001", base + "_READY"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: store.write(n, b"x"), names))
    generation = write_catalog(store, time.time())
    puller = make_puller(store_settings, tmp_path / "root", download_workers=16,
                         max_concurrent_installs=8)
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


@pytest.mark.slow
def test_sigkill_mid_download_leaves_nothing_partial(store: GCSStore,
                                                     store_settings: StoreSettings,
                                                     model_factory, tmp_path: Path) -> None:
    src = model_factory(2.0, shards=16, pad_bytes=160 * 2**20)
    publish(store, src, "big", prefix="models", marker="_READY")
    root = tmp_path / "root"
    env = {"MODELSYNC_BUCKET": store_settings.bucket,
           "STORAGE_EMULATOR_HOST": store_settings.emulator_host or "",
           "MODELSYNC_MODEL_ROOT": str(root), "MODELSYNC_POLL_S": "0.5",
           "MODELSYNC_DOWNLOAD_WORKERS": "1", "MODELSYNC_HTTP_PORT": "0"}
    import sys
    proc = ManagedProcess("puller", [sys.executable, "-m", "modelsync.cli", "puller"],
                          tmp_path / "puller1.log", env=env).start()
    incoming = root / ".modelsync" / "incoming"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until some, not all, files are on disk
            partial = [p for p in incoming.rglob("*") if p.is_file()] if incoming.exists() else []
            if len(partial) >= 3:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("download never started: " + proc.log_tail())
        proc.kill(signal.SIGKILL)
    finally:
        proc.stop()
    assert not (root / "big" / "1").exists()  # nothing partial is visible
    assert any(incoming.iterdir())  # the leftovers of the killed download are there ...
    proc2 = ManagedProcess("puller", [sys.executable, "-m", "modelsync.cli", "puller"],
                           tmp_path / "puller2.log", env=env).start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and LocalLayout(root).read_record("big", 1) is None:
            time.sleep(0.2)
        assert LocalLayout(root).read_record("big", 1) is not None, proc2.log_tail()
    finally:
        assert proc2.stop() == 0
    assert same_tree(src, root / "big" / "1")
    assert list(incoming.iterdir()) == []  # ... and were swept at start
    assert "incoming_swept" in (tmp_path / "puller2.log").read_text()


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 3 MiB filesystem (tmpfs), to fill up for real."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_an_event_not_a_partial_version(store: GCSStore,
                                                     store_settings: StoreSettings,
                                                     model_factory, small_disk: Path) -> None:
    publish(store, model_factory(2.0, shards=2, pad_bytes=6 * 2**20), "big", prefix="models",
            marker="_READY")
    publish(store, model_factory(3.0), "small", prefix="models", marker="_READY")
    # one install at a time, so the small model is not caught by the big one filling the disk
    puller = make_puller(store_settings, small_disk, max_concurrent_installs=1)
    try:
        result = puller.tick()
        assert result.installed == [("small", 1)]
        assert result.failed == [("big", 1, "disk_full")]
        assert not (small_disk / "big").exists() or list((small_disk / "big").iterdir()) == []
        assert list((small_disk / ".modelsync" / "incoming").iterdir()) == []
        assert events(puller, "install_failed")[0]["kind"] == "disk_full"
        assert same_tree(model_factory(3.0), small_disk / "small" / "1")
    finally:
        puller.close()


@pytest.mark.slow
def test_daemon_http_endpoints(store: GCSStore, store_settings: StoreSettings, model_factory,
                               tmp_path: Path) -> None:
    import json
    import sys
    import urllib.request

    from modelsync.emulator import free_port

    port = free_port()
    root = tmp_path / "root"
    env = {"MODELSYNC_BUCKET": store_settings.bucket,
           "STORAGE_EMULATOR_HOST": store_settings.emulator_host or "",
           "MODELSYNC_MODEL_ROOT": str(root), "MODELSYNC_POLL_S": "3600",
           "MODELSYNC_NODE_ID": "node-http"}
    proc = ManagedProcess("puller", [sys.executable, "-m", "modelsync.cli", "puller",
                                     "--port", str(port)], tmp_path / "p.log", env=env).start()

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if get("/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert get("/healthz")[0] == 200
        status = json.loads(get("/status")[1])
        assert status["node_id"] == "node-http" and status["installed"] == {}
        # publish, then ask for a sync now (the poll interval is an hour)
        publish(store, model_factory(2.0), "m", prefix="models", marker="_READY")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/sync", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "1" not in json.loads(
                get("/status")[1])["installed"].get("m", {}):
            time.sleep(0.1)
        status = json.loads(get("/status")[1])
        assert "1" in status["installed"]["m"]
        assert any(e["event"] == "version_installed" for e in status["events"])
        code, metrics = get("/metrics")
        assert code == 200 and b'modelsync_puller_installs_total{outcome="ok"} 1.0' in metrics
        assert b"modelsync_puller_poll_storage_calls" in metrics
        assert get("/nope")[0] == 404
    finally:
        assert proc.stop() == 0, proc.log_tail()
