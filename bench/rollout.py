"""rollout: 6 nodes as processes and a master on this machine, a Predict load on every node
(x uniform in [0, 1)), a staged rollout spec; then four versions in turn:

(a) a good version: the time to complete against the configured minimum (bake x baked stages);
(b) one that fails 20 % of valid requests: the most nodes that ever served it, the time from
    the first detectable breach to every node AVAILABLE on the previous version, the failed
    requests on nodes outside the canary;
(c) one whose outputs are NaN on its warmup file: the requests it answered (validation);
(d) one 5x slower: rolled back on p99.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc
import requests

from bench.common import table
from modelsync.client import PredictClient
from modelsync.dev.emulator import GCSEmulator
from modelsync.dev.procs import MasterSpec, Node, start_master
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

ADMIN, NODE = "bench-admin-token-0123456789", "bench-node-token-0123456789"
MIN_REQUESTS = 60


class Load:
    """Predict on every node, bounded in count and time; each answer noted with its version."""

    def __init__(self, nodes: list[Node], rps: float, limit_s: float) -> None:
        self.nodes, self.rps, self.deadline = nodes, rps, time.monotonic() + limit_s
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[float, str, int | None, bool]] = []  # (t, node, version, ok)
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in nodes]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def _run(self, node: Node) -> None:
        client = PredictClient(f"127.0.0.1:{node.grpc_port}")
        rng = random.Random(node.name)
        version: int | None = None
        for _ in range(1_000_000):
            if self.stop.is_set() or time.monotonic() > self.deadline:
                break
            started = time.monotonic()
            try:
                version, _out = client.predict("demo", {"x": [rng.random()]}, timeout_s=10)
                ok = True
            except grpc.RpcError:
                ok = False  # the answering version is the node's last known one
            with self.lock:
                self.answers.append((time.time(), node.name, version if ok else None, ok))
            self.stop.wait(max(0.0, 1 / self.rps - (time.monotonic() - started)))
        client.close()

    def since(self, t0: float) -> list[tuple[float, str, int | None, bool]]:
        with self.lock:
            return [a for a in self.answers if a[0] >= t0]

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


class Cluster:
    def __init__(self, tmp: Path, emu_url: str, n: int) -> None:
        self.master = start_master(
            tmp / "master",
            MasterSpec(
                bucket="bench",
                emulator_host=emu_url,
                admin_token=ADMIN,
                node_secret=NODE,
                catalog_s=0.5,
                extra_env={"MODELSYNC_ROLLOUT_S": "0.5"},
            ),
        )
        self.url = self.master.url  # type: ignore[attr-defined]
        env = {"MODELSYNC_HEARTBEAT_S": "1", "MODELSYNC_TELEMETRY_S": "1"}
        self.nodes = [
            Node(
                tmp / f"n{i}",
                bucket="bench",
                emulator_host=emu_url,
                name=f"n{i}",
                poll_s=0.5,
                master_url=self.url,
                node_secret=NODE,
                extra_env=env,
            )
            for i in range(n)
        ]
        for node in self.nodes:
            node.start()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {ADMIN}"

    def rollout(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.session.get(
            f"{self.url}/v1/models/demo/rollout", timeout=30
        ).json()
        return doc

    def available(self) -> dict[str, set[int]]:
        nodes = self.session.get(f"{self.url}/v1/nodes", timeout=30).json()["nodes"]
        return {
            n["node_id"]: set(
                n["roles"]
                .get("config_manager", {})
                .get("status", {})
                .get("available", {})
                .get("demo", [])
            )
            for n in nodes
        }

    def wait(self, pred: Any, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = pred()
            if value:
                return value
            time.sleep(0.2)
        raise RuntimeError(f"{what}: not within {timeout_s} s; rollout: {self.rollout()}")

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        self.master.stop()


def breach_time(
    answers: list[tuple[float, str, int | None, bool]],
    canary: set[str],
    since: float,
    max_error_rate: float,
) -> float | None:
    """When the canary's answers first held a detectable breach: at least MIN_REQUESTS
    requests with an error rate above the limit."""
    n = errors = 0
    for t, node, _v, ok in answers:
        if t < since or node not in canary:
            continue
        n += 1
        errors += not ok
        if n >= MIN_REQUESTS and errors / n > max_error_rate:
            return t
    return None


def run(quick: bool) -> dict[str, Any]:
    from modelsync.dev.models import (
        make_erroring_model,
        make_linear_model,
        make_nan_model,
        make_slow_model,
    )

    n_nodes, bake = (3, 4.0) if quick else (6, 15.0)
    spec: dict[str, Any] = {
        "canary_nodes": 1,
        "waves": [0.5, 1.0],
        "bake_s": bake,
        "min_requests": MIN_REQUESTS,
        "max_error_rate": 0.05,
        "max_p99_ratio": 2.0,
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_s, GCSEmulator() as emu:
        tmp = Path(tmp_s)
        store = GCSStore(StoreSettings(bucket="bench", emulator_host=emu.url))
        store.ensure_bucket()
        src = {
            "v1": make_linear_model(tmp / "src1", 2.0, 1.0),
            "good": make_linear_model(tmp / "src2", 3.0, 1.0),
            "erroring": make_erroring_model(tmp / "src3", 4.0, 1.0, 0.8),
            "nan": make_nan_model(tmp / "src4", warmup=True),
            "slow": make_slow_model(tmp / "src5", 5.0, 1.0, 12.0),
        }
        cluster = Cluster(tmp, emu.url, n_nodes)
        load = None
        try:
            publish(store, src["v1"], "demo", PublishOptions(version=1))
            cluster.wait(
                lambda: (
                    all(vs == {1} for vs in cluster.available().values())
                    and len(cluster.available()) == n_nodes
                ),
                180,
                "v1 everywhere",
            )
            r = cluster.session.put(f"{cluster.url}/v1/models/demo/rollout", json=spec, timeout=30)
            assert r.status_code == 200, r.text
            cluster.wait(lambda: cluster.rollout()["status"] == "complete", 60, "adopted")
            load = Load(cluster.nodes, rps=15.0, limit_s=1800).start()
            figures = scenarios(cluster, load, store, src, spec, n_nodes)
        finally:
            if load is not None:
                load.close()
            cluster.close()
    figures.update(
        {"nodes": n_nodes, "bake_s": bake, "total_seconds": round(time.monotonic() - started, 1)}
    )
    table(
        f"rollout: {n_nodes} nodes, canary 1, waves [0.5, 1.0], bake {bake:g} s, "
        "Predict load on every node",
        [(k, v) for k, v in figures.items()],
    )
    return figures


def scenarios(
    cluster: Cluster,
    load: Load,
    store: GCSStore,
    src: dict[str, Path],
    spec: dict[str, Any],
    n_nodes: int,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    # (a) a good version rolls out: canary, a wave, everyone
    t0 = time.time()
    publish(store, src["good"], "demo", PublishOptions(version=2))
    cluster.wait(
        lambda: (
            cluster.rollout()["status"] == "complete"
            and all(2 in vs for vs in cluster.available().values())
        ),
        600,
        "good done",
    )
    figures["rollout_complete_s"] = round(time.time() - t0, 2)
    minimum = spec["bake_s"] * 2  # two baked stages: the canary and the half-fleet wave
    figures["rollout_minimum_s"] = minimum
    figures["rollout_overhead_s"] = round(figures["rollout_complete_s"] - minimum, 2)
    # (b) ~20 % of valid requests fail: rolled back on the error rate
    for key, version, name in (("erroring", 3, "errors"), ("nan", 4, "nan"), ("slow", 5, "slow")):
        t0 = time.time()
        publish(store, src[key], "demo", PublishOptions(version=version))
        r = cluster.wait(
            lambda v=version: (
                (r := cluster.rollout())["status"] == "rolled_back" and r["version"] == v and r
            ),
            600,
            f"{name} rolled back",
        )
        back = cluster.wait(
            lambda: all(vs == {2} for vs in cluster.available().values()) and time.time(),
            120,
            f"{name}: all back on v2",
        )
        answers = load.since(t0)
        served_by = defaultdict(set)
        for _t, node, v, _ok in answers:
            if v == version:
                served_by[version].add(node)
        canary = {h for h in r["nodes_on_version"]}
        if name == "errors":
            breach = breach_time(answers, canary, t0, spec["max_error_rate"]) or back
            figures["bad_nodes_max"] = len(served_by[version] | canary)
            figures["rollback_s"] = round(back - breach, 2)
            figures["failed_predicts_outside_canary"] = sum(
                1 for _t, node, _v, ok in answers if not ok and node not in canary
            )
            figures["errors_reason"] = r["reason"][:80]
        elif name == "nan":
            figures["unvalidated_served"] = sum(1 for a in answers if a[2] == version)
            figures["nan_reason"] = r["reason"][:80]
        else:
            figures["slow_rolled_back_on_p99"] = "p99" in r["reason"]
            figures["slow_rollback_s"] = round(back - t0, 2)
            figures["slow_reason"] = r["reason"][:80]
    figures["nodes_seen"] = n_nodes
    return figures
