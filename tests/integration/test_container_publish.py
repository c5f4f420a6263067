"""``modelsync publish --image``: the descriptor and its manifest in a real bucket
(fake-gcs-server), the digest from a real registry (Debian's docker-registry), the kind in
the catalog and ``modelsync list``, and every bad flag as one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from containers_kit import push_manifest

from modelsync.catalog import build_catalog
from modelsync.container import parse_descriptor
from modelsync.dev.registry import Registry
from modelsync.layout import DESCRIPTOR_NAME, SettleTracker, parse_listing
from modelsync.manifest import parse_manifest
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    yield reg
    reg.stop()


def cli(args: list[str], settings: StoreSettings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MODELSYNC_BUCKET": settings.bucket,
        "STORAGE_EMULATOR_HOST": settings.emulator_host or "",
    }
    env.pop("MODELSYNC_MASTER_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_publish_image_writes_descriptor_manifest_and_digest(
    registry: Registry, store: GCSStore, store_settings: StoreSettings
) -> None:
    image = f"{registry.address}/team/churn:1"
    digest = push_manifest(registry.address, "team/churn", "1")
    args = ["publish", "--image", image, "--model", "churn", "--port", "9000"]
    args += ["--env", "THREADS=2", "--cpus", "0.5", "--memory", "256M"]
    done = cli(args, store_settings)
    assert done.returncode == 0, done.stderr
    assert "published gs://" in done.stdout and "/churn/1/" in done.stdout
    descriptor = parse_descriptor(store.read(f"models/churn/1/{DESCRIPTOR_NAME}"))
    assert descriptor.image == image and descriptor.digest == digest
    assert descriptor.port == 9000 and dict(descriptor.env) == {"THREADS": "2"}
    assert descriptor.resources.cpus == 0.5
    assert descriptor.resources.memory_bytes == 256 * 2**20
    assert descriptor.reference == f"{image}@{digest}"
    manifest = parse_manifest(store.read("models/churn/1/_READY"))
    assert manifest is not None and [f.path for f in manifest.files] == [DESCRIPTOR_NAME]
    listing = parse_listing(store.list_objects("models/"), "models", "_READY")
    catalog = build_catalog(listing, SettleTracker.markers_only(), 0.0, "models")
    assert catalog.models["churn"][1].complete and catalog.models["churn"][1].kind == "container"
    # the same image again: nothing new; a new tag: the next version, with its own digest
    again = cli(args, store_settings)
    assert again.returncode == 0 and again.stdout.startswith("unchanged"), again
    digest2 = push_manifest(registry.address, "team/churn", "2", salt="v2")
    assert (
        cli(
            ["publish", "--image", f"{registry.address}/team/churn:2", "--model", "churn"],
            store_settings,
        ).returncode
        == 0
    )
    second = parse_descriptor(store.read(f"models/churn/2/{DESCRIPTOR_NAME}"))
    assert second.digest == digest2 != digest and second.port == 8080
    listed = cli(["list"], store_settings)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split()[:2] for line in listed.stdout.splitlines() if line.startswith("    ")]
    assert ["1", "container"] in rows and ["2", "container"] in rows


def test_an_unknown_tag_or_registry_publishes_without_a_digest_and_says_so(
    registry: Registry, store: GCSStore, store_settings: StoreSettings
) -> None:
    done = cli(
        ["publish", "--image", f"{registry.address}/nothing:1", "--model", "ghost"],
        store_settings,
    )
    assert done.returncode == 0, done.stderr
    assert "HTTP 404: digest unknown" in done.stderr
    assert parse_descriptor(store.read(f"models/ghost/1/{DESCRIPTOR_NAME}")).digest is None


def test_bad_flags_are_one_line_each_and_write_nothing(
    store: GCSStore, store_settings: StoreSettings, tmp_path: Path
) -> None:
    done = cli(
        [
            "publish",
            "--image",
            "Registry/Churn",
            "--model",
            "churn",
            "--env",
            "1BAD=x",
            "--env",
            "NOEQUALS",
            "--cpus",
            "0",
            "--memory",
            "lots",
        ],
        store_settings,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 5, lines
    assert all(line.startswith("modelsync publish: error: ") for line in lines)
    joined = "\n".join(lines)
    for needle in (
        "--env 'NOEQUALS'",
        "--memory 'lots'",
        "image:",
        "--env '1BAD=x': bad name '1BAD'",
        "resources.cpus",
    ):
        assert needle in joined
    both = cli(["publish", str(tmp_path), "--image", "r.io/a:1", "--model", "m"], store_settings)
    assert both.returncode == 2 and "one of them" in both.stderr
    assert store.list_objects("models/") == []
