"""download: the puller's install throughput for a model in 16 variables shards, against a
sequential object-by-object download with google-cloud-storage (how common pullers do it) and
google.cloud.storage.transfer_manager with the same worker count; and the puller's peak RSS.

Then a tarball version (one ``model.tar.gz`` of incompressible padding): the installer's
one-pass path (the download streams through one checked extraction) against the two-pass path
it replaced (download the tarball to disk, check every member, decompress again to extract),
kept here as ``TwoPassInstaller``; both install the same object in the same run, alternately,
and so does the one-pass path on the standard library's zlib (the fallback when neither isal
nor zlib-ng is installed). ``tarball_vs_peer_quoted`` compares with the figure issue #24 quotes
for mlmodel-manager's puller on this 229 MiB tarball on this machine (4.0 s: it downloads to a
file, then ``tarfile`` extracts it): that peer is not run here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import Timer, rss_mb, table
from modelsync import decompress
from modelsync.dev.emulator import GCSEmulator
from modelsync.layout import RemoteVersion
from modelsync.local import LocalLayout
from modelsync.publish import PublishOptions, publish
from modelsync.savedmodel import (
    DEFAULT_MAX_TAR_BYTES,
    TarballError,
    _member_problem,
    _normalized,
    local_files,
)
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from remote_model_puller.installer import Installer, InstallError

WORKERS = 8
PEER_QUOTED_S = 4.0  # issue #24: mlmodel-manager's puller, the same 229 MiB model.tar.gz


def _two_pass_extract(path: Path, dest: Path, max_bytes: int) -> None:
    """The extraction the installer did before: one pass to check, a second to extract."""
    total = 0
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            problem = _member_problem(m)
            if problem:
                raise TarballError(f"unsafe tarball member: {problem}")
            if m.isfile():
                total += m.size
                if total > max_bytes:
                    raise TarballError(f"tarball content exceeds {max_bytes} bytes")
    total = 0
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            rel = _normalized(m.name)
            if not rel:
                continue
            target = dest / rel
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with src, open(target, "xb") as fh:
                while chunk := src.read(1 << 20):
                    total += len(chunk)
                    fh.write(chunk)


class TwoPassInstaller(Installer):
    """The installer with the tarball path it had before the one-pass extraction."""

    def _fetch_tarball(self, rv: RemoteVersion, dest: Path) -> int:
        download = dest.parent / "download"
        download.mkdir()
        total = self._download_all(rv, download)  # to disk, fsync'd, CRC32C-checked
        try:
            _two_pass_extract(download / rv.files[0].path, dest, self.max_tar_bytes)
        except TarballError as exc:
            raise InstallError("tarball", str(exc)) from None
        shutil.rmtree(download)
        return total


def tarball_case(
    tmp: Path, store: GCSStore, settings: StoreSettings, quick: bool
) -> dict[str, Any]:
    from modelsync.dev.models import make_linear_model

    size = (32 if quick else 256) * 2**20
    rounds = 2 if quick else 3
    src = make_linear_model(tmp / "tsrc", 2.0, 1.0, shards=4, pad_bytes=size)
    tar_path = tmp / "model.tar.gz"
    with Timer() as packing, tarfile.open(tar_path, "w:gz", compresslevel=6) as tar:
        for rel in local_files(src):  # what `tar czf` makes
            tar.add(src / rel, arcname=rel)
    content = sum((src / rel).stat().st_size for rel in local_files(src))
    n_files = len(local_files(src))
    shutil.rmtree(src)
    publish(store, tar_path, "tarred", PublishOptions(version=1))
    compressed = tar_path.stat().st_size
    tar_path.unlink()
    times: dict[str, list[float]] = {"one": [], "zlib": [], "two": []}
    fastest = decompress.INFLATER
    with ThreadPoolExecutor(WORKERS) as pool:
        for r in range(rounds):
            for label, cls in (("one", Installer), ("zlib", Installer), ("two", TwoPassInstaller)):
                root = tmp / f"t{label}{r}"
                layout = LocalLayout(root)
                layout.ensure()
                installer = cls(store, settings, layout, pool, max_tar_bytes=DEFAULT_MAX_TAR_BYTES)
                rv = installer.list_version("tarred", 1)
                decompress.INFLATER = zlib if label == "zlib" else fastest
                try:
                    with Timer() as t:
                        installer.install("tarred", 1, rv.fingerprint, rv)
                finally:
                    decompress.INFLATER = fastest
                times[label].append(t.seconds)
                assert len(local_files(root / "tarred" / "1")) == n_files
                shutil.rmtree(root)
    one = min(times["one"])
    return {
        "tarball_content_bytes": content,
        "tarball_bytes": compressed,
        "tarball_install_s": one,
        "tarball_install_zlib_s": min(times["zlib"]),
        "tarball_two_pass_s": min(times["two"]),
        "tarball_speedup": min(times["two"]) / one,
        "tarball_vs_peer_quoted": PEER_QUOTED_S / one,
        "tarball_rounds": rounds,
        "tarball_packing_s": packing.seconds,
    }


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
            result = publish(store, src, "big", PublishOptions(version=1))
            shutil.rmtree(src)
            total = result.bytes
            names = [
                o.name for o in store.list_objects("models/big/1/") if not o.name.endswith("_READY")
            ]
            client = storage.Client(
                project="bench",
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": emu.url},
            )
            bucket = client.bucket("bench")

            def sequential(dest: Path) -> None:
                for name in names:
                    path = dest / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    bucket.blob(name).download_to_filename(str(path))

            def with_transfer_manager(dest: Path) -> None:
                results = transfer_manager.download_many_to_path(
                    bucket,
                    names,
                    destination_directory=str(dest),
                    max_workers=WORKERS,
                    worker_type=transfer_manager.THREAD,
                    raise_exception=True,
                )
                assert all(r is None for r in results)

            def puller(dest: Path) -> tuple[float, float]:
                env = {
                    "MODELSYNC_BUCKET": "bench",
                    "STORAGE_EMULATOR_HOST": emu.url,
                    "MODELSYNC_MODEL_ROOT": str(dest),
                    "MODELSYNC_POLL_S": "0.2",
                    "MODELSYNC_DOWNLOAD_WORKERS": str(WORKERS),
                    "MODELSYNC_HTTP_PORT": "0",
                    "MODELSYNC_GCS_TIMEOUT_S": "300",
                }
                proc = subprocess.Popen(
                    [sys.executable, "-m", "cli", "puller"],
                    env={**os.environ, **env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
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
            tar_figures = tarball_case(tmp, store, settings, quick)
    mb = total / 2**20
    puller_mbps, seq_mbps, tm_mbps = mb / min(pull_s), mb / min(seq_s), mb / min(tm_s)
    figures = {
        "bytes": total,
        "files": len(names),
        "workers": WORKERS,
        "puller_MBps": puller_mbps,
        "sequential_MBps": seq_mbps,
        "transfer_manager_MBps": tm_mbps,
        "ratio_vs_best_baseline": puller_mbps / max(seq_mbps, tm_mbps),
        "puller_peak_rss_MB": max(peaks),
        "model_generation_s": gen.seconds,
        **tar_figures,
    }
    table(
        f"download: {mb:.0f} MiB in {len(names)} objects (16 shards), {WORKERS} workers, "
        f"best of {rounds}",
        [
            ("puller install (verified, atomic), MB/s", puller_mbps),
            ("sequential google-cloud-storage, MB/s", seq_mbps),
            (f"transfer_manager ({WORKERS} threads), MB/s", tm_mbps),
            ("ratio puller / best baseline", figures["ratio_vs_best_baseline"]),
            ("puller peak RSS, MB", max(peaks)),
        ],
    )
    speedup = tar_figures["tarball_speedup"]
    table(
        f"download: one model.tar.gz, {tar_figures['tarball_bytes'] / 2**20:.0f} MiB "
        f"({tar_figures['tarball_content_bytes'] / 2**20:.0f} MiB of content), installed "
        f"in-process, best of {tar_figures['tarball_rounds']}",
        [
            (
                "one pass (download streams through the checked extraction), s",
                tar_figures["tarball_install_s"],
            ),
            (
                "one pass on the standard library's zlib (the fallback), s",
                tar_figures["tarball_install_zlib_s"],
            ),
            ("two passes (download, check, extract), s", tar_figures["tarball_two_pass_s"]),
            ("speedup", speedup),
            ("inflater", decompress.INFLATER.__name__),
            (
                f"mlmodel-manager's puller as quoted in issue #24 ({PEER_QUOTED_S} s, not run "
                "here) / one pass",
                tar_figures["tarball_vs_peer_quoted"],
            ),
        ],
    )
    return figures
