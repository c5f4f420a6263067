"""cluster: on the multi-node Swarm of `make cluster` (brought up, and taken down after, when
none is up: Linux, root): the stack as deployed, its workers on their own Docker Engines.

- publish -> AVAILABLE on every worker: 10 successive versions (3 with --quick) of a ~5 MB
  model, from the marker write to GetModelStatus AVAILABLE on every worker's TF Serving;
- bytes the bucket served per rollout, divided by the version's size: counted on the GCS
  emulator host's link (its veth), so TCP/IP headers and the nodes' polls are in it;
- join: a new host (namespace, engine, Swarm join with the serving label) until it serves the
  current version of every model in the bucket, validated (image pull, tasks, downloads).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, table
from config_manager.tfs_client import GrpcServingClient
from modelsync.dev.cluster import SCRIPT, Cluster, Host, wait_ready
from modelsync.publish import PublishOptions, publish

JOIN_HOST = 5


def ensure_cluster() -> tuple[Cluster, bool]:
    """The running cluster, or one brought up now (True: take it down afterwards)."""
    found = Cluster.load()
    if found is not None:
        wait_ready(found, 300)
        return found, False
    subprocess.run(["bash", str(SCRIPT), "up"], check=True, timeout=3000)
    up = Cluster.load()
    assert up is not None
    return up, True


def available_everywhere(clients: dict[str, GrpcServingClient], model: str, version: int) -> bool:
    for c in clients.values():
        try:
            states = {s.version: s.state for s in c.model_status(model)}
        except Exception:
            return False
        if states.get(version) != "AVAILABLE":
            return False
    return True


def propagation(
    cluster: Cluster, tmp: Path, versions: int
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    from modelsync.dev.models import make_linear_model

    model = f"bench-{int(time.time())}"
    store = cluster.store()
    clients = {w.name: GrpcServingClient(w.grpc, timeout_s=2) for w in cluster.workers}
    rows = []
    try:
        for v in range(1, versions + 1):
            src = make_linear_model(tmp / f"v{v}", float(v), 1.0, shards=2, pad_bytes=5 * 2**20)
            size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
            before = cluster.gcs_bytes_sent()
            publish(store, src, model, PublishOptions(version=v))
            t0 = time.monotonic()  # publish() returns right after the marker write
            deadline = t0 + 180
            done: dict[str, float] = {}
            while len(done) < len(clients) and time.monotonic() < deadline:
                for name, c in clients.items():
                    if name not in done and available_everywhere({name: c}, model, v):
                        done[name] = time.monotonic() - t0
                time.sleep(0.05)
            if len(done) < len(clients):
                raise TimeoutError(f"v{v} not AVAILABLE on every worker within 180 s: {done}")
            time.sleep(1)  # the last reads are counted
            rows.append(
                {
                    "version": v,
                    "all_s": max(done.values()),
                    "first_s": min(done.values()),
                    "ratio": (cluster.gcs_bytes_sent() - before) / size,
                    "size_MB": size / 2**20,
                }
            )
    finally:
        for c in clients.values():
            c.channel.close()
    return rows, {"model": model}


def join(cluster: Cluster) -> dict[str, float]:
    """A host joins; the time until it serves every model's current version."""
    targets = {
        m: max(doc["target_versions"])
        for m, doc in cluster.api("/v1/cluster")["models"].items()
        if doc["target_versions"]
    }
    t0 = time.monotonic()
    cluster = cluster.script("host-add", str(JOIN_HOST), timeout_s=300)
    joined_s = time.monotonic() - t0
    new: Host = cluster.host(JOIN_HOST)
    client = GrpcServingClient(new.grpc, timeout_s=2)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if all(available_everywhere({"new": client}, m, v) for m, v in targets.items()):
                break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"{new.name} did not serve {targets} within 600 s")
        serving_s = time.monotonic() - t0
    finally:
        client.channel.close()
        cluster.script("host-remove", str(JOIN_HOST), timeout_s=300)
    return {"join_swarm_s": joined_s, "join_serving_s": serving_s, "join_models": len(targets)}


def run(quick: bool) -> dict[str, Any]:
    versions = 3 if quick else 10
    cluster, ours = ensure_cluster()
    try:
        with tempfile.TemporaryDirectory() as tmp_s:
            rows, _info = propagation(cluster, Path(tmp_s), versions)
        joined = join(cluster)
    finally:
        if ours:
            subprocess.run(["bash", str(SCRIPT), "down"], check=True, timeout=600)
    alls = [r["all_s"] for r in rows]
    ratios = [r["ratio"] for r in rows]
    figures: dict[str, Any] = {
        "workers": len(cluster.workers),
        "versions": versions,
        "model_MB": round(rows[0]["size_MB"], 2),
        "publish_to_all_p50_s": percentile(alls, 50),
        "publish_to_all_p95_s": percentile(alls, 95),
        "bucket_bytes_per_rollout_x_model": percentile(ratios, 50),
        **joined,
    }
    table(
        f"cluster: {len(cluster.workers)} workers on their own Docker Engines, "
        f"{versions} versions of a {figures['model_MB']:.1f} MB model",
        [
            (
                f"v{r['version']}: marker -> AVAILABLE on first / all s, bucket bytes / size",
                f"{r['first_s']:.2f} / {r['all_s']:.2f}, {r['ratio']:.2f}",
            )
            for r in rows
        ]
        + [
            (
                "publish -> AVAILABLE on all p50 / p95 s",
                f"{figures['publish_to_all_p50_s']:.2f} / {figures['publish_to_all_p95_s']:.2f}",
            ),
            ("bucket bytes per rollout / model size (p50)", ratios and percentile(ratios, 50)),
            ("join: in the Swarm s", joined["join_swarm_s"]),
            (f"join: serving all {joined['join_models']} models s", joined["join_serving_s"]),
        ],
    )
    return figures
