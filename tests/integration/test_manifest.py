"""No version trusted beyond its manifest: the publisher writes it and refuses junk, the puller
installs only what matches it, the catalog shows it. Against fake-gcs-server, with real
SavedModels, the CLI as a subprocess and the puller in-process."""

from __future__ import annotations

import dataclasses
import getpass
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from helpers import wait_for
from puller_kit import make_puller, same_tree

from master.catalog_writer import CatalogWriter
from master.cluster import model_view
from master.index import Fleet
from modelsync.checksums import crc32c_b64
from modelsync.layout import parse_listing
from modelsync.local import LocalLayout
from modelsync.manifest import Publisher, build_manifest, dump_manifest, parse_manifest
from modelsync.policy import Policy
from modelsync.publish import PublishError, PublishOptions, publish
from modelsync.savedmodel import local_files
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from remote_model_puller.installer import InstallError

pytestmark = pytest.mark.integration
SHARD = "variables/variables.data-00000-of-00002"


def snapshot(store: GCSStore) -> list[tuple[str, int]]:
    return [(o.name, o.generation) for o in store.list_objects("")]


def run_cli(args: list[str], settings: StoreSettings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": settings.emulator_host or "",
        "MODELSYNC_BUCKET": settings.bucket,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def junk_model(tmp_path: Path, pb: bytes = b"junk!") -> Path:
    d = tmp_path / "junk"
    d.mkdir()
    (d / "saved_model.pb").write_bytes(pb)
    return d


def test_cli_refuses_a_junk_saved_model_and_writes_nothing(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    publish(store, model_factory(2.0), "ranker")
    before = snapshot(store)
    src = model_factory(2.0)
    tar_path = tmp_path / "junk.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for rel in local_files(src):
            data = b"junk!" if rel == "saved_model.pb" else (src / rel).read_bytes()
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    for path, reason in [
        (junk_model(tmp_path), "saved_model.pb is not a SavedModel protobuf"),
        (tar_path, "tarball's saved_model.pb is not a SavedModel protobuf"),
    ]:
        res = run_cli(["publish", str(path), "--model", "ranker"], store_settings)
        assert res.returncode == 1, res
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("modelsync publish: error:") and reason in lines[0], lines
        assert snapshot(store) == before


def test_a_model_without_signatures_is_refused(
    store: GCSStore, model_factory, tmp_path: Path
) -> None:
    from modelsync.protos import saved_model_protos

    sm = saved_model_protos().get("tensorflow.SavedModel")()
    sm.meta_graphs.add().meta_info_def.tags.append("serve")
    d = tmp_path / "m"
    shutil.copytree(model_factory(2.0), d)
    (d / "saved_model.pb").write_bytes(sm.SerializeToString())
    with pytest.raises(PublishError, match="has no signature"):
        publish(store, d, "m")
    assert snapshot(store) == []


def test_the_marker_is_a_manifest_of_every_file(
    store: GCSStore, model_factory, tmp_path: Path
) -> None:
    src = model_factory(2.0, shards=2)
    publish(store, src, "m")
    manifest = parse_manifest(store.read("models/m/1/_READY"))
    assert manifest is not None
    assert [f.path for f in manifest.files] == local_files(src)  # sorted, marker excluded
    assert {f.path: (f.size, f.crc32c) for f in manifest.files} == {
        rel: ((src / rel).stat().st_size, crc32c_b64((src / rel).read_bytes()))
        for rel in local_files(src)
    }
    assert manifest.publisher.user == getpass.getuser()
    assert manifest.publisher.tool.startswith("modelsync ")
    assert json.loads(store.read("models/m/1/_READY"))["schema"] == 1
    rv = parse_listing(store.list_objects("models/"), "models", "_READY").version("m", 1)
    assert rv is not None and manifest.mismatch(rv.files) is None
    tar_path = tmp_path / "m.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for rel in local_files(src):
            tar.add(src / rel, arcname=rel)
    publish(store, tar_path, "t", PublishOptions(version=3))
    tm = parse_manifest(store.read("models/t/3/_READY"))
    assert tm is not None and [(f.path, f.size) for f in tm.files] == [
        ("model.tar.gz", tar_path.stat().st_size)
    ]


def test_a_file_overwritten_after_the_marker_is_not_installed(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    src = model_factory(2.0, shards=2)
    publish(store, src, "m")
    root = tmp_path / "root"
    puller = make_puller(store_settings, root)
    try:
        assert puller.tick().installed == [("m", 1)]
        record = LocalLayout(root).read_record("m", 1)
        assert record is not None and record.manifest_verified
        # the same version's shard is overwritten after _READY: the fingerprint changes
        store.write(f"models/m/1/{SHARD}", b"other bytes")
        result = puller.tick()
        assert result.installed == [] and ("m", 1, "manifest_mismatch") in result.failed
        assert same_tree(src, root / "m" / "1")  # the old content stays
        assert puller.tick().failed == []  # remembered: not tried again while nothing changes
        # the publisher signs the new content: a new marker (only) makes it worth a new try
        rv = parse_listing(store.list_objects("models/"), "models", "_READY").version("m", 1)
        assert rv is not None
        signed = build_manifest(
            [(f.path, f.size, f.crc32c or "") for f in rv.files], Publisher(tool="test"), 1.0
        )
        store.write("models/m/1/_READY", dump_manifest(signed))
        assert wait_for(lambda: puller.tick().installed, 30, "re-signed m/1") == [("m", 1)]
        assert (root / "m" / "1" / SHARD).read_bytes() == b"other bytes"
        # a newer version tampered with before any node installed it
        publish(store, model_factory(3.0, shards=2), "m")
        store.write(f"models/m/2/{SHARD}", b"x" * 10)
        store.write("models/m/2/assets/extra.txt", b"not in the manifest")
        rv = puller.installer.list_version("m", 2)
        puller.store.calls.clear()
        with pytest.raises(InstallError) as info:
            puller.installer.install("m", 2, rv.fingerprint, rv)
        assert info.value.kind == "manifest_mismatch"
        message = str(info.value)
        assert message.startswith("m/2: bucket does not match the manifest (2 differences)")
        assert "extra assets/extra.txt" in message and f"{SHARD} size 10 != " in message
        assert puller.store.calls == {"read": 1}  # the marker only: nothing downloaded
        assert not (root / "m" / "2").exists()
        assert list((root / ".modelsync" / "incoming").iterdir()) == []
    finally:
        puller.close()


def test_markers_without_a_manifest_keep_todays_rules(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    src = model_factory(2.0, shards=2)
    for rel in local_files(src):
        store.upload(f"models/m/1/{rel}", str(src / rel))
    store.write("models/m/1/_READY", b"")  # a third-party publisher's empty marker
    root = tmp_path / "root"
    puller = make_puller(store_settings, root)
    try:
        assert puller.tick().installed == [("m", 1)]
        assert same_tree(src, root / "m" / "1")
        record = LocalLayout(root).read_record("m", 1)
        assert record is not None and not record.manifest_verified
        # no manifest: a listing that disagrees with the bytes is still caught by the CRC32C
        publish(store, model_factory(3.0), "m", PublishOptions(version=2))
        store.write("models/m/2/_READY", b"")
        rv = puller.installer.list_version("m", 2)
        bad = tuple(
            dataclasses.replace(f, crc32c="AAAAAA==") if f.path == "saved_model.pb" else f
            for f in rv.files
        )
        with pytest.raises(InstallError) as info:
            puller.installer.install("m", 2, rv.fingerprint, dataclasses.replace(rv, files=bad))
        assert info.value.kind == "checksum"
        # a malformed manifest is a mismatch, never trusted
        store.write("models/m/2/_READY", b'{"schema": 1, "files": [')
        rv = puller.installer.list_version("m", 2)
        with pytest.raises(InstallError) as info:
            puller.installer.install("m", 2, rv.fingerprint, rv)
        assert info.value.kind == "manifest_mismatch" and "not a JSON manifest" in str(info.value)
    finally:
        puller.close()


def test_a_tarball_version_streams_into_place(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    src = model_factory(2.0, shards=2)
    tar_path = tmp_path / "m.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for rel in local_files(src):
            tar.add(src / rel, arcname=rel)
    publish(store, tar_path, "t")
    root = tmp_path / "root"
    puller = make_puller(store_settings, root)
    try:
        assert puller.tick().installed == [("t", 1)]
        assert same_tree(src, root / "t" / "1")
        record = LocalLayout(root).read_record("t", 1)
        assert record is not None and record.manifest_verified
        assert record.bytes == tar_path.stat().st_size
        assert list((root / ".modelsync" / "incoming").iterdir()) == []
    finally:
        puller.close()


def test_catalog_shows_the_manifest_state_reading_each_marker_once(
    store: GCSStore, store_settings: StoreSettings, model_factory
) -> None:
    publish(store, model_factory(2.0, shards=2), "m")
    publish(store, model_factory(3.0, shards=2), "m")
    src = model_factory(4.0)
    for rel in local_files(src):
        store.upload(f"models/m/3/{rel}", str(src / rel))
    store.write("models/m/3/_READY", b"")
    writer = CatalogWriter(store, store_settings, settle_s=0)
    writer.refresh()
    assert writer.current is not None
    states = {v: (cv.manifest, cv.problem) for v, cv in writer.current.models["m"].items()}
    assert states == {1: ("verified", None), 2: ("verified", None), 3: ("none", None)}
    store.calls.clear()
    again = writer.refresh()
    assert again.patched and not again.written
    assert "read" not in store.calls  # steady state: no marker is read again
    store.write(f"models/m/2/{SHARD}", b"other bytes")
    store.calls.clear()
    assert writer.refresh().written
    assert "read" not in store.calls  # the marker did not change: still cached
    cv = writer.current.models["m"][2]
    assert cv.manifest == "mismatch" and cv.problem is not None and SHARD in cv.problem
    # a restarted master trusts the states its catalog records for the same markers
    store.calls.clear()
    restarted = CatalogWriter(store, store_settings, settle_s=0)
    assert restarted.refresh().patched
    assert store.calls["read"] == 1  # catalog.json itself, no marker
    assert restarted.current is not None and restarted.current.models == writer.current.models
    view = model_view("m", writer.current, Policy(), Fleet(0.0, {}, {}, {}, {}, {}))
    assert {v: d["manifest"] for v, d in view["versions"].items()} == {
        "1": "verified",
        "2": "mismatch",
        "3": "none",
    }


def test_overwrite_writes_a_fresh_manifest_and_identical_content_is_a_no_op(
    store: GCSStore, model_factory
) -> None:
    publish(store, model_factory(2.0), "m", PublishOptions(version=1))
    before = snapshot(store)
    same = publish(store, model_factory(2.0), "m", PublishOptions(version=1, overwrite=True))
    assert same.unchanged and snapshot(store) == before  # nothing rewritten
    new = publish(store, model_factory(5.0), "m", PublishOptions(version=1, overwrite=True))
    assert not new.unchanged
    manifest = parse_manifest(store.read("models/m/1/_READY"))
    rv = parse_listing(store.list_objects("models/"), "models", "_READY").version("m", 1)
    assert manifest is not None and rv is not None and manifest.mismatch(rv.files) is None
    src = model_factory(5.0)
    assert {f.path: f.crc32c for f in manifest.files} == {
        rel: crc32c_b64((src / rel).read_bytes()) for rel in local_files(src)
    }
