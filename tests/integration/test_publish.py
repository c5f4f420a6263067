"""Publishing real SavedModels to fake-gcs-server, through the library and the CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from modelsync.layout import SettleTracker, complete_versions, parse_listing
from modelsync.publish import PublishError, PublishOptions, publish
from modelsync.savedmodel import local_files
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = pytest.mark.integration


def snapshot(store: GCSStore) -> list[tuple[str, int]]:
    return [(o.name, o.generation) for o in store.list_objects("")]


def test_publish_and_read_back_byte_identical(store: GCSStore, model_factory) -> None:
    src = model_factory(2.0, shards=3)
    result = publish(store, src, "ranker")
    assert result.version == 1 and result.files == len(local_files(src))
    for rel in local_files(src):
        assert store.read(f"models/ranker/1/{rel}") == (src / rel).read_bytes()
    listing = parse_listing(store.list_objects("models/"), "models", "_READY")
    rv = listing.version("ranker", 1)
    assert rv is not None and rv.has_marker and rv.problem() is None
    assert rv.bytes == result.bytes
    # the marker is the newest object of the version: written last
    objects = store.list_objects("models/ranker/1/")
    newest = max(objects, key=lambda o: o.generation)
    assert newest.name.endswith("/_READY")
    assert complete_versions(listing, SettleTracker(3600), now=0)["ranker"].keys() == {1}
    # without --version: the next free one
    assert publish(store, model_factory(3.0), "ranker").version == 2


def test_publish_tarball(store: GCSStore, model_factory, tmp_path: Path) -> None:
    src = model_factory(2.0)
    tar_path = tmp_path / "m.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for rel in local_files(src):
            tar.add(src / rel, arcname=rel)
    result = publish(store, tar_path, "tarred", PublishOptions(version=7))
    assert result.version == 7
    assert store.read("models/tarred/7/model.tar.gz") == tar_path.read_bytes()


def test_refusals_leave_bucket_unchanged(store: GCSStore, model_factory, tmp_path: Path) -> None:
    publish(store, model_factory(2.0), "ranker", PublishOptions(version=1))
    before = snapshot(store)
    not_sm = tmp_path / "notsm"
    not_sm.mkdir()
    (not_sm / "weights.h5").write_bytes(b"x")
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    cases = [
        (dict(path=not_sm, model="ranker"), "not a SavedModel"),
        (dict(path=model_factory(2.0), model="bad name"), "bad model name"),
        (dict(path=model_factory(2.0), model="_modelsync"), "reserved"),
        (
            dict(path=model_factory(2.0), model="ranker", options=PublishOptions(version=1)),
            "already exists",
        ),
        (dict(path=evil, model="ranker"), "unsafe tarball"),
        (dict(path=tmp_path / "missing", model="ranker"), "no such file"),
    ]
    for kwargs, reason in cases:
        with pytest.raises(PublishError, match=reason):
            publish(store, **kwargs)  # type: ignore[arg-type]
        assert snapshot(store) == before


def test_overwrite_replaces_a_version(store: GCSStore, model_factory) -> None:
    publish(store, model_factory(2.0), "m", PublishOptions(version=1))
    old = {o.name: o.generation for o in store.list_objects("models/m/1/")}
    publish(store, model_factory(5.0), "m", PublishOptions(version=1, overwrite=True))
    new = {o.name: o.generation for o in store.list_objects("models/m/1/")}
    assert set(new) >= {n for n in old if not n.endswith("fingerprint.pb")}
    assert all(new[n] != old[n] for n in new if n in old)
    src = model_factory(5.0)
    assert (
        store.read("models/m/1/variables/variables.index")
        == (src / "variables/variables.index").read_bytes()
    )


def run_cli(args: list[str], settings: StoreSettings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": settings.emulator_host or "",
        "MODELSYNC_BUCKET": settings.bucket,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_publish_and_refusals(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    src = model_factory(2.0)
    ok = run_cli(["publish", str(src), "--model", "ranker"], store_settings)
    assert ok.returncode == 0, ok.stderr
    assert "published gs://" in ok.stdout and "/models/ranker/1/" in ok.stdout
    before = snapshot(store)
    not_sm = tmp_path / "plain"
    not_sm.mkdir()
    (not_sm / "a.txt").write_text("x")
    for args, reason in [
        (["publish", str(not_sm), "--model", "ranker"], "not a SavedModel"),
        (["publish", str(src), "--model", "bad/name"], "bad model name"),
        (["publish", str(src), "--model", "ranker", "--version", "1"], "already exists"),
    ]:
        res = run_cli(args, store_settings)
        assert res.returncode == 1, res
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("modelsync publish: error:") and reason in lines[0]
        assert snapshot(store) == before
    listed = run_cli(["list"], store_settings)
    assert listed.returncode == 0 and "ranker" in listed.stdout and "complete" in listed.stdout


def test_cli_bad_setting_exits_2(store_settings: StoreSettings, model_factory) -> None:
    env_settings = StoreSettings(bucket="", emulator_host=store_settings.emulator_host)
    res = subprocess.run(
        [sys.executable, "-m", "cli", "list"],
        env={
            **os.environ,
            "STORAGE_EMULATOR_HOST": env_settings.emulator_host or "",
            "MODELSYNC_BUCKET": "",
            "MODELSYNC_GCS_TIMEOUT_S": "x",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "MODELSYNC_" in res.stderr
