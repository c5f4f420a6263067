"""download: the puller's install throughput for a model in 16 variables shards, against a
sequential object-by-object download with google-cloud-storage (how common pullers do it) and
google.cloud.storage.transfer_manager with the same worker count; and the puller's peak RSS."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Timer, rss_mb, table
from modelsync.dev.emulator import GCSEmulator
from modelsync.local import LocalLayout
from modelsync.publish import publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

WORKERS = 8


def run(quick: bool) -> dict[str, Any]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.cloud.storage import transfer_manager

    from modelsync.dev.models import make_linear_model

    size = (256 if quick else 1024) * 2**20
    rounds = 1 if quick else 2
    with tempfile.TemporaryDirectory(dir=".") as tmp_s:
        tmp = Path(tmp_s)
        with Timer() as gen:
            src = make_linear_model(tmp / "src", 2.0, 1.0, shards=16, pad_bytes=size)
        with GCSEmulator() as emu:
            settings = StoreSettings(bucket="bench", emulator_host=emu.url, timeout_s=300)
            store = GCSStore(settings)
            store.ensure_bucket()
            result = publish(store, src, "big", prefix="models", marker="_READY", version=1)
            shutil.rmtree(src)
            total = result.bytes
            names = [o.name for o in store.list_objects("models/big/1/")
                     if not o.name.endswith("_READY")]
            client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                                    client_options={"api_endpoint": emu.url})
            bucket = client.bucket("bench")

            def sequential(dest: Path) -> None:
                for name in names:
                    path = dest / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    bucket.blob(name).download_to_filename(str(path))

            def with_transfer_manager(dest: Path) -> None:
                results = transfer_manager.download_many_to_path(
                    bucket, names, destination_directory=str(dest), max_workers=WORKERS,
                    worker_type=transfer_manager.THREAD, raise_exception=True)
                assert all(r is None for r in results)

            def puller(dest: Path) -> tuple[float, float]:
                env = {"MODELSYNC_BUCKET": "bench", "STORAGE_EMULATOR_HOST": emu.url,
                       "MODELSYNC_MODEL_ROOT": str(dest), "MODELSYNC_POLL_S": "0.2",
                       "MODELSYNC_DOWNLOAD_WORKERS": str(WORKERS), "MODELSYNC_HTTP_PORT": "0",
                       "MODELSYNC_GCS_TIMEOUT_S": "300"}
                import os
                proc = subprocess.Popen([sys.executable, "-m", "cli", "puller"],
                                        env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                try:
                    layout = LocalLayout(dest)
                    deadline = time.monotonic() + 900
                    record = None
                    while time.monotonic() < deadline and record is None:
                        record = layout.read_record("big", 1)
                        time.sleep(0.05)
                    assert record is not None, "the puller did not install the model"
                    peak = rss_mb(proc.pid, peak=True)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                return record.seconds, peak

            seq_s, tm_s, pull_s, peaks = [], [], [], []
            for r in range(rounds):
                for label, fn in (("seq", sequential), ("tm", with_transfer_manager)):
                    dest = tmp / f"{label}{r}"
                    dest.mkdir()
                    with Timer() as t:
                        fn(dest)
                    (seq_s if label == "seq" else tm_s).append(t.seconds)
                    shutil.rmtree(dest)
                dest = tmp / f"puller{r}"
                seconds, peak = puller(dest)
                pull_s.append(seconds)
                peaks.append(peak)
                shutil.rmtree(dest)
    mb = total / 2**20
    puller_mbps, seq_mbps, tm_mbps = mb / min(pull_s), mb / min(seq_s), mb / min(tm_s)
    figures = {"bytes": total, "files": len(names), "workers": WORKERS,
               "puller_MBps": puller_mbps, "sequential_MBps": seq_mbps,
               "transfer_manager_MBps": tm_mbps,
               "ratio_vs_best_baseline": puller_mbps / max(seq_mbps, tm_mbps),
               "puller_peak_rss_MB": max(peaks), "model_generation_s": gen.seconds}
    table(f"download: {mb:.0f} MiB in {len(names)} objects (16 shards), {WORKERS} workers, "
          f"best of {rounds}", [
              ("puller install (verified, atomic), MB/s", puller_mbps),
              ("sequential google-cloud-storage, MB/s", seq_mbps),
              (f"transfer_manager ({WORKERS} threads), MB/s", tm_mbps),
              ("ratio puller / best baseline", figures["ratio_vs_best_baseline"]),
              ("puller peak RSS, MB", max(peaks))])
    return figures
