"""footprint: RSS and time to ready of each daemon, idle, with 50 models installed and served.
TensorFlow is imported only where a model runs (the model server)."""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import rss_mb, table, tree_pss_mb, tree_rss_mb
from modelsync.dev.emulator import GCSEmulator
from modelsync.dev.procs import (
    ManagedProcess,
    MasterSpec,
    Node,
    start_master,
    wait_grpc_ready,
    wait_http_ok,
)
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

ADMIN, NODE = "bench-admin-token-0123456789", "bench-node-token-0123456789"


def _ready(url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(url)


def run(quick: bool) -> dict[str, Any]:
    from modelsync.dev.models import make_linear_model

    n_models = 50
    with tempfile.TemporaryDirectory() as tmp_s, GCSEmulator() as emu:
        tmp = Path(tmp_s)
        settings = StoreSettings(bucket="bench", emulator_host=emu.url)
        store = GCSStore(settings)
        store.ensure_bucket()
        src = make_linear_model(tmp / "src", 2.0, 1.0)
        for i in range(n_models):
            publish(store, src, f"model{i:02d}", PublishOptions(version=1))
        master = start_master(
            tmp / "master",
            MasterSpec(
                bucket="bench",
                emulator_host=emu.url,
                admin_token=ADMIN,
                node_secret=NODE,
                catalog_s=2,
            ),
        )
        node = Node(
            tmp / "node",
            bucket="bench",
            emulator_host=emu.url,
            poll_s=2,
            master_url=master.url,
            node_secret=NODE,  # type: ignore[attr-defined]
            extra_env={"MODELSYNC_HEARTBEAT_S": "2"},
        )
        try:
            node.start()

            def converged() -> bool:
                req = urllib.request.Request(
                    f"{master.url}/v1/cluster",  # type: ignore[attr-defined]
                    headers={"Authorization": f"Bearer {ADMIN}"},
                )
                with urllib.request.urlopen(req, timeout=10) as r:
                    models = json.loads(r.read())["models"]
                return len(models) == n_models and all(m["converged"] for m in models.values())

            deadline = time.monotonic() + 600
            while not converged():
                if time.monotonic() > deadline:
                    raise TimeoutError("50 models not served")
                time.sleep(0.5)
            time.sleep(5)  # idle
            assert node.puller and node.config_manager and node.model_server
            rss = {
                "puller": rss_mb(node.puller.pid),
                "config_manager": rss_mb(node.config_manager.pid),
                "master": tree_rss_mb(master.pid),
                "model_server": rss_mb(node.model_server.pid),
            }
            master_pss = tree_pss_mb(master.pid)
            ready: dict[str, float] = {}
            for name, proc, url in (
                ("puller", node.puller, f"http://127.0.0.1:{node.puller_port}/readyz"),
                ("config_manager", node.config_manager, f"http://127.0.0.1:{node.cm_port}/readyz"),
            ):
                proc.stop()
                again = ManagedProcess(proc.name, proc.args, proc.log_path, env=node.env)
                t = time.monotonic()
                again.start()
                _ready(url)
                ready[name] = time.monotonic() - t
                setattr(node, name, again)
            master.stop()
            t = time.monotonic()
            master = ManagedProcess("master", master.args, master.log_path, env=master.env)
            master.url = f"http://127.0.0.1:{master.args[-1]}"  # type: ignore[attr-defined]
            master.start()
            _ready(f"{master.url}/readyz")  # type: ignore[attr-defined]
            ready["master"] = time.monotonic() - t
            node.model_server.stop()
            t = time.monotonic()
            node.start_model_server()  # reads the config file: 50 models loaded at start
            wait_grpc_ready(f"127.0.0.1:{node.grpc_port}", 300)
            ready["model_server"] = time.monotonic() - t
            wait_http_ok(f"http://127.0.0.1:{node.cm_port}/healthz", 30)
        finally:
            node.stop()
            master.stop()
    figures = {
        **{f"{k}_rss_MB": v for k, v in rss.items()},
        "master_pss_MB": master_pss,
        **{f"{k}_ready_s": v for k, v in ready.items()},
        "models": n_models,
    }
    table(
        f"footprint: idle, {n_models} models installed and AVAILABLE",
        [
            *((f"{k} RSS MB", v) for k, v in rss.items()),
            ("master PSS MB (its processes' shared pages counted once)", master_pss),
            *((f"{k} time to ready s", v) for k, v in ready.items()),
        ],
    )
    return figures
