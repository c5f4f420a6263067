"""propagation: 3 nodes and a master on this machine at the production defaults of ``poll_s``
and ``catalog_s``. Two figures:

- a publish: 10 successive versions of a ~5 MB model, each published as ``modelsync publish``
  does (the marker, then a word to the master); the time from the marker to AVAILABLE on all 3
  nodes, and apart from it the pure download and load times (both loads: under the validation
  shadow name and the real one); what is left is modelsync's overhead.
- ``operator_action_s``: while a large version (200 MiB; 32 MiB with ``--quick``) downloads
  through each node's own link throttled to 2 MB/s, an operator pins or rolls back: the time
  from the API call to every node answering Predict with that version. Before each action the
  pin is removed so that the large download is under way again (every action cancels it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import median, percentile, table
from config_manager.tfs_client import GrpcServingClient
from master.settings import MasterSettings
from modelsync.client import PredictClient
from modelsync.dev.emulator import GCSEmulator
from modelsync.dev.procs import MasterSpec, Node, start_master
from modelsync.dev.throttle import LinkProxy
from modelsync.local import LocalLayout
from modelsync.notify import MasterTarget, tell_master
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from remote_model_puller.settings import PullerSettings

ADMIN, NODE = "bench-admin-token-0123456789", "bench-node-token-0123456789"
PUBLISH = "bench-publish-token-0123456789"
NODES = 3
LINK_BYTES_PER_S = 2_000_000
POLL_S = PullerSettings.poll_s  # the production defaults, not retyped
CATALOG_S = MasterSettings.catalog_s


def _load_seconds(log: Path, model: str, version: int) -> float:
    """TF Serving's load time of the version: under its validation shadow name and its own."""
    total = 0.0
    for line in log.read_text().splitlines():
        if '"version_available"' in line:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("model") in (model, f"_validate.{model}") and doc.get("version") == version:
                total += float(doc["seconds"])
    return total


def _served(client: PredictClient) -> int | None:
    try:
        return client.predict("demo", {"x": [1.0]}, timeout_s=2)[0]
    except Exception:
        return None


def _until(check: Any, timeout_s: float, what: str, interval_s: float = 0.005) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(what)
        time.sleep(interval_s)
    return time.monotonic() - started


def _call(url: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {ADMIN}")
    with urllib.request.urlopen(req, timeout=30) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


def _installing(node: Node) -> list[str]:
    url = f"http://127.0.0.1:{node.puller_port}/status"
    with urllib.request.urlopen(url, timeout=10) as r:
        installing: list[str] = json.loads(r.read())["installing"]
        return installing


def run(quick: bool) -> dict[str, Any]:
    from modelsync.dev.models import make_linear_model

    versions = 10
    big_bytes = (32 if quick else 200) * 2**20
    actions = 6 if quick else 12
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
                publish_token=PUBLISH,
                catalog_s=CATALOG_S,
            ),
        )
        url: str = master.url  # type: ignore[attr-defined]
        target = MasterTarget(url, PUBLISH)
        port = int(emu.url.rsplit(":", 1)[1])
        links = [LinkProxy(port, None) for _ in range(NODES)]  # unthrottled at first
        nodes = [
            Node(
                tmp / f"node{i}",
                bucket="bench",
                emulator_host=links[i].url,
                name=f"node{i}",
                poll_s=POLL_S,
                master_url=url,
                node_secret=NODE,
            )
            for i in range(NODES)
        ]
        rows, action_rows = [], []
        clients: list[PredictClient] = []
        statuses: list[GrpcServingClient] = []
        try:
            for n in nodes:
                n.start()
                clients.append(PredictClient(f"127.0.0.1:{n.grpc_port}"))
                statuses.append(GrpcServingClient(f"127.0.0.1:{n.grpc_port}", timeout_s=2))
            for v, src in enumerate(sources, start=1):
                publish(store, src, "demo", PublishOptions(version=v))
                t0 = time.monotonic()  # publish() returns right after the marker write
                tell_master(target, "demo", v)  # what `modelsync publish` does next
                done: dict[int, float] = {}
                deadline = t0 + 120
                while len(done) < len(nodes) and time.monotonic() < deadline:
                    for i, c in enumerate(statuses):
                        if i not in done:
                            try:
                                states = {s.version: s.state for s in c.model_status("demo")}
                            except Exception:
                                continue
                            if states.get(v) == "AVAILABLE":
                                done[i] = time.monotonic() - t0
                    time.sleep(0.005)
                if len(done) < len(nodes):
                    raise TimeoutError(f"version {v} not AVAILABLE on every node")
                downloads, loads = [], []
                for n in nodes:
                    record = LocalLayout(n.model_root).read_record("demo", v)
                    downloads.append(record.seconds if record else float("nan"))
                    assert n.model_server is not None
                    loads.append(_load_seconds(n.model_server.log_path, "demo", v))
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
            _until(lambda: all(_served(c) == versions for c in clients), 60, "last version")
            action_rows = _operator_actions(
                tmp, store, target, url, nodes, clients, links, versions, big_bytes, actions
            )
        finally:
            for c in clients:
                c.close()
            for sc in statuses:
                sc.close()
            for n in nodes:
                n.stop()
            for link in links:
                link.close()
            master.stop()
    props = [r["propagation_s"] for r in rows]
    over = [r["overhead_s"] for r in rows]
    acts = [r["seconds"] for r in action_rows]
    figures = {
        "versions": versions,
        "nodes": NODES,
        "poll_s": POLL_S,
        "catalog_s": CATALOG_S,
        "propagation_p50_s": percentile(props, 50),
        "propagation_p95_s": percentile(props, 95),
        "overhead_p50_s": median(over),
        "overhead_p95_s": percentile(over, 95),
        "download_p50_s": median(r["download_s"] for r in rows),
        "load_p50_s": median(r["load_s"] for r in rows),
        "operator_actions": len(acts),
        "operator_action_p50_s": percentile(acts, 50),
        "operator_action_s": percentile(acts, 95),  # p95: the figure issue #24 asks for
        "operator_big_version_MiB": big_bytes // 2**20,
        "link_MBps": LINK_BYTES_PER_S / 1e6,
    }
    table(
        f"propagation: {NODES} nodes + master, poll_s={POLL_S:g}, catalog_s={CATALOG_S:g} "
        f"(production defaults), {versions} versions of a ~5 MB model, published with a word "
        "to the master",
        [
            (
                f"v{r['version']}: marker -> AVAILABLE on {NODES} nodes / download / load s",
                f"{r['propagation_s']:.2f} / {r['download_s']:.2f} / {r['load_s']:.2f}",
            )
            for r in rows
        ]
        + [
            (
                "propagation p50 / p95 s",
                f"{figures['propagation_p50_s']:.2f} / {figures['propagation_p95_s']:.2f}",
            ),
            (
                "overhead p50 / p95 s (propagation - download - load)",
                f"{figures['overhead_p50_s']:.3f} / {figures['overhead_p95_s']:.3f}",
            ),
        ],
    )
    table(
        f"operator actions while a {big_bytes // 2**20} MiB version downloads through each "
        f"node's 2 MB/s link: API call -> every node answers with the version",
        [(f"{r['action']} -> v{r['version']}, s", r["seconds"]) for r in action_rows]
        + [
            (
                "operator_action p50 / p95 s",
                f"{figures['operator_action_p50_s']:.3f} / {figures['operator_action_s']:.3f}",
            )
        ],
    )
    return figures


def _operator_actions(
    tmp: Path,
    store: GCSStore,
    target: MasterTarget,
    url: str,
    nodes: list[Node],
    clients: list[PredictClient],
    links: list[LinkProxy],
    versions: int,
    big_bytes: int,
    actions: int,
) -> list[dict[str, Any]]:
    """Pin the version before the newest, then roll back (which pins the newest again), in
    turn, each while the large version downloads everywhere."""
    big = tmp / "big"
    shutil.copytree(tmp / "src" / str(versions), big)
    (big / "assets").mkdir(exist_ok=True)
    (big / "assets" / "blob.bin").write_bytes(os.urandom(big_bytes))
    for link in links:
        link.rate.bytes_per_s = LINK_BYTES_PER_S
    big_version = versions + 1
    publish(store, big, "demo", PublishOptions(version=big_version))
    tell_master(target, "demo", big_version)
    rows = []
    for k in range(actions):
        if k:
            _call(url, "DELETE", "/v1/models/demo/pin")
        marks = [link.bytes_down for link in links]

        def downloading(marks: list[int] = marks) -> bool:
            moving = zip(links, marks, strict=True)
            return all(f"demo/{big_version}" in _installing(n) for n in nodes) and all(
                link.bytes_down > m + 256 * 1024 for link, m in moving
            )

        _until(downloading, 120, "the large version downloading everywhere", interval_s=0.05)
        started = time.monotonic()
        if k % 2 == 0:
            action = "pin"
            doc = _call(url, "POST", "/v1/models/demo/pin", {"version": versions - 1})
        else:
            action = (
                "rollback"  # the newest complete (the large one) is served: pins the one before
            )
            doc = _call(url, "POST", "/v1/models/demo/rollback")
        version = doc["policy"]["pin"]

        def answered(version: int = version) -> bool:
            return all(_served(c) == version for c in clients)

        _until(answered, 60, f"{action} served")
        rows.append({"action": action, "version": version, "seconds": time.monotonic() - started})
    for n in nodes:  # the last action cancelled the large download: nothing of it is left
        layout = LocalLayout(n.model_root)
        _until(lambda layout=layout: not any(layout.incoming.iterdir()), 30, "incoming empty")
        assert not layout.version_dir("demo", big_version).exists()
    return rows
