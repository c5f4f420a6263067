"""propagation: 3 nodes and a master on this machine, poll_s=1; 10 successive versions of a
~5 MB model; for each, the time from the marker write to AVAILABLE on all 3 nodes, and apart
from it the pure download and load times (what is left is modelsync's overhead)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import median, percentile, table
from config_manager.tfs_client import GrpcServingClient
from modelsync.dev.emulator import GCSEmulator
from modelsync.dev.procs import MasterSpec, Node, start_master
from modelsync.local import LocalLayout
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

ADMIN, NODE = "bench-admin-token-0123456789", "bench-node-token-0123456789"


def _load_seconds(log: Path, model: str, version: int) -> float | None:
    for line in log.read_text().splitlines():
        if '"version_available"' in line:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("model") == model and doc.get("version") == version:
                return float(doc["seconds"])
    return None


def run(quick: bool) -> dict[str, Any]:
    from modelsync.dev.models import make_linear_model

    versions = 10
    with tempfile.TemporaryDirectory() as tmp_s, GCSEmulator() as emu:
        tmp = Path(tmp_s)
        settings = StoreSettings(bucket="bench", emulator_host=emu.url)
        store = GCSStore(settings)
        store.ensure_bucket()
        sources = [
            make_linear_model(tmp / "src" / str(v), float(v), 1.0, shards=2, pad_bytes=5 * 2**20)
            for v in range(1, versions + 1)
        ]
        master = start_master(
            tmp / "master",
            MasterSpec(
                bucket="bench",
                emulator_host=emu.url,
                admin_token=ADMIN,
                node_secret=NODE,
                catalog_s=1,
            ),
        )
        nodes = [
            Node(
                tmp / f"node{i}",
                bucket="bench",
                emulator_host=emu.url,
                name=f"node{i}",
                poll_s=1.0,
                master_url=master.url,  # type: ignore[attr-defined]
                node_secret=NODE,
                extra_env={"MODELSYNC_HEARTBEAT_S": "2"},
            )
            for i in range(3)
        ]
        rows = []
        try:
            for n in nodes:
                n.start()
            clients = [GrpcServingClient(f"127.0.0.1:{n.grpc_port}", timeout_s=2) for n in nodes]
            for v, src in enumerate(sources, start=1):
                publish(store, src, "demo", PublishOptions(version=v))
                t0 = time.monotonic()  # publish() returns right after the marker write
                done: dict[int, float] = {}
                deadline = t0 + 120
                while len(done) < len(nodes) and time.monotonic() < deadline:
                    for i, c in enumerate(clients):
                        if i in done:
                            continue
                        try:
                            states = {s.version: s.state for s in c.model_status("demo")}
                        except Exception:
                            continue
                        if states.get(v) == "AVAILABLE":
                            done[i] = time.monotonic() - t0
                    time.sleep(0.01)
                if len(done) < len(nodes):
                    raise TimeoutError(f"version {v} not AVAILABLE on every node")
                downloads, loads = [], []
                for n in nodes:
                    record = LocalLayout(n.model_root).read_record("demo", v)
                    downloads.append(record.seconds if record else float("nan"))
                    assert n.model_server is not None
                    loads.append(_load_seconds(n.model_server.log_path, "demo", v) or 0.0)
                prop = max(done.values())
                rows.append(
                    {
                        "version": v,
                        "propagation_s": prop,
                        "download_s": max(downloads),
                        "load_s": max(loads),
                        "overhead_s": prop - max(downloads) - max(loads),
                    }
                )
                time.sleep(0.5)
            for c in clients:
                c.close()
        finally:
            for n in nodes:
                n.stop()
            master.stop()
    props = [r["propagation_s"] for r in rows]
    over = [r["overhead_s"] for r in rows]
    figures = {
        "versions": versions,
        "nodes": 3,
        "propagation_p50_s": percentile(props, 50),
        "propagation_p95_s": percentile(props, 95),
        "overhead_p50_s": median(over),
        "download_p50_s": median(r["download_s"] for r in rows),
        "load_p50_s": median(r["load_s"] for r in rows),
    }
    table(
        "propagation: 3 nodes + master, poll_s=1, catalog_s=1, 10 versions of a ~5 MB model",
        [
            (
                f"v{r['version']}: marker -> AVAILABLE on 3 nodes / download / load s",
                f"{r['propagation_s']:.2f} / {r['download_s']:.2f} / {r['load_s']:.2f}",
            )
            for r in rows
        ]
        + [
            (
                "propagation p50 / p95 s",
                f"{figures['propagation_p50_s']:.2f} / {figures['propagation_p95_s']:.2f}",
            ),
            ("overhead p50 s (propagation - download - load)", figures["overhead_p50_s"]),
        ],
    )
    return figures
