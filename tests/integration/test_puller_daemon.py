"""The puller as a process and under faults: SIGKILL mid-download, a full disk, its HTTP
endpoints."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from puller_kit import events, make_puller, same_tree

from modelsync.dev.procs import ManagedProcess
from modelsync.local import LocalLayout
from modelsync.publish import publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_sigkill_mid_download_leaves_nothing_partial(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    src = model_factory(2.0, shards=16, pad_bytes=160 * 2**20)
    publish(store, src, "big")
    root = tmp_path / "root"
    env = {
        "MODELSYNC_BUCKET": store_settings.bucket,
        "STORAGE_EMULATOR_HOST": store_settings.emulator_host or "",
        "MODELSYNC_MODEL_ROOT": str(root),
        "MODELSYNC_POLL_S": "0.5",
        "MODELSYNC_DOWNLOAD_WORKERS": "1",
        "MODELSYNC_HTTP_PORT": "0",
    }
    proc = ManagedProcess(
        "puller", [sys.executable, "-m", "cli", "puller"], tmp_path / "puller1.log", env=env
    ).start()
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
    proc2 = ManagedProcess(
        "puller", [sys.executable, "-m", "cli", "puller"], tmp_path / "puller2.log", env=env
    ).start()
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

    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_an_event_not_a_partial_version(
    store: GCSStore, store_settings: StoreSettings, model_factory, small_disk: Path
) -> None:
    publish(store, model_factory(2.0, shards=2, pad_bytes=6 * 2**20), "big")
    publish(store, model_factory(3.0), "small")
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
def test_daemon_http_endpoints(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:
    import json
    import urllib.request

    from modelsync.dev.emulator import free_port

    port = free_port()
    root = tmp_path / "root"
    env = {
        "MODELSYNC_BUCKET": store_settings.bucket,
        "STORAGE_EMULATOR_HOST": store_settings.emulator_host or "",
        "MODELSYNC_MODEL_ROOT": str(root),
        "MODELSYNC_POLL_S": "3600",
        "MODELSYNC_NODE_ID": "node-http",
    }
    proc = ManagedProcess(
        "puller",
        [sys.executable, "-m", "cli", "puller", "--port", str(port)],
        tmp_path / "p.log",
        env=env,
    ).start()

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
        publish(store, model_factory(2.0), "m")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/sync", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "1" not in json.loads(get("/status")[1])[
            "installed"
        ].get("m", {}):
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
