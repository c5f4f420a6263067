"""idle_poll: storage calls and seconds of a node's idle poll, fresh catalog vs stale (the node
lists the bucket itself, and the CPU seconds that costs the node), and of the master's catalog
refresh, over a large bucket whose markers carry manifests: the first refresh of a bucket
reads each marker once, later ones (and a restarted master's) read none."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Timer, median, table
from master.catalog_writer import CatalogWriter
from modelsync.catalog import catalog_object
from modelsync.checksums import crc32c_b64
from modelsync.dev.emulator import GCSEmulator
from modelsync.local import LocalLayout
from modelsync.manifest import Publisher, build_manifest, dump_manifest
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from remote_model_puller.bucket_view import BucketView

FILES = ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001")


def _polls(view: BucketView, n: int, source: str) -> tuple[list[int], list[float], list[float]]:
    """``n`` polls: their storage calls, seconds and CPU seconds (each must use ``source``)."""
    calls, seconds, cpu = [], [], []
    for _ in range(n):
        cpu_start = time.process_time()
        with Timer() as t:
            state = view.poll()
        cpu.append(time.process_time() - cpu_start)
        assert state.source == source, state.source
        calls.append(state.calls)
        seconds.append(t.seconds)
    return calls, seconds, cpu


def run(quick: bool) -> dict[str, Any]:
    # The issue asks for 1,000 models at full size (80,000 objects). fake-gcs-server cannot hold
    # that here: its memory backend ingests objects in quadratic time (16,000 in 27 s, 80,000
    # would take over 10 minutes) and its filesystem backend lists in quadratic time. The full
    # run stops at 500 models (40,000 objects); the idle poll does not depend on the size.
    models, versions = (200, 20) if quick else (500, 20)
    names = [
        f"models/m{m:04d}/{v}/{f}"
        for m in range(models)
        for v in range(1, versions + 1)
        for f in (*FILES, "_READY")
    ]
    manifest = dump_manifest(
        build_manifest(
            [(f, 1, crc32c_b64(b"x")) for f in FILES], Publisher("bench", "bench", "modelsync"), 0.0
        )
    )
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as tmp:
        with Timer() as fill:  # preloaded by fake-gcs-server at start: fast for 80,000 objects
            for n in names:
                path = Path(data) / "bench" / n
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(manifest if n.endswith("/_READY") else b"x")
        emu = GCSEmulator(data_dir=data, start_timeout_s=900).start()
        settings = StoreSettings(bucket="bench", emulator_host=emu.url)
        store = GCSStore(settings, pool_size=32)
        writer = CatalogWriter(GCSStore(settings), settings, settle_s=30)
        refreshes, first_calls = [], 0
        for _ in range(3):
            with Timer() as t:
                result = writer.refresh()
            refreshes.append(t.seconds)
            first_calls = first_calls or result.calls
        assert writer.current is not None
        verified = sum(
            cv.manifest == "verified" for vs in writer.current.models.values() for cv in vs.values()
        )
        assert verified == models * versions, verified
        restarted = CatalogWriter(GCSStore(settings), settings, settle_s=30)
        with Timer() as restart:  # a new master: trusts the states its catalog records
            restart_calls = restarted.refresh().calls
        node_store = GCSStore(settings)
        view = BucketView(node_store, settings, LocalLayout(tmp), catalog_max_age_s=60)
        view.poll()  # first poll downloads the catalog and policy bodies
        idle_calls, idle_s, _ = _polls(view, 20, "catalog")
        store.patch_metadata(catalog_object("models"), {"listed_at": str(time.time() - 3600)})
        fb_calls, fb_s, fb_cpu = _polls(view, 3, "listing")
        emu.stop()
    figures = {
        "bucket_objects": len(names),
        "idle_poll_calls": max(idle_calls),
        "idle_poll_s": median(idle_s),
        "fallback_poll_calls": max(fb_calls),
        "fallback_poll_s": median(fb_s),
        "fallback_poll_cpu_s": median(fb_cpu),
        "catalog_refresh_s": median(refreshes),
        "catalog_refresh_calls": result.calls,
        "catalog_first_refresh_s": refreshes[0],
        "catalog_first_refresh_calls": first_calls,
        "catalog_restart_refresh_s": restart.seconds,
        "catalog_restart_refresh_calls": restart_calls,
        "fill_s": fill.seconds,
    }
    table(
        f"idle_poll: {models} models x {versions} versions x 4 objects ({len(names)} objects)",
        [
            ("idle poll, fresh catalog: storage calls", max(idle_calls)),
            ("idle poll, fresh catalog: seconds (median of 20)", median(idle_s)),
            ("poll with a stale catalog (own listing): calls", max(fb_calls)),
            ("poll with a stale catalog: seconds (median of 3)", median(fb_s)),
            ("poll with a stale catalog: CPU seconds (median of 3)", median(fb_cpu)),
            ("master catalog refresh: seconds (median of 3)", median(refreshes)),
            ("master catalog refresh: storage calls", result.calls),
            ("master's first refresh (reads every marker once): seconds", refreshes[0]),
            ("master's first refresh: storage calls", first_calls),
            ("a restarted master's first refresh: seconds", restart.seconds),
            ("a restarted master's first refresh: storage calls", restart_calls),
        ],
    )
    return figures
