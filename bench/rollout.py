"""rollout: 6 nodes as processes and a master on this machine (3 with ``--quick``), a Predict
load on every node that mixes requests naming only the model, requests naming the label
``stable`` (kept on v1 throughout, so two versions are AVAILABLE on every node) and ~8 % client
errors (an unknown input: INVALID_ARGUMENT), a staged rollout spec; then, in turn:

(a) good versions in a row (20; 3 with ``--quick``), each the same graph with another
    constant: ``false_rollbacks`` of them (goal 0), the first one's time to complete against
    the configured minimum (bake x baked stages);
(b) one that fails 35 % of valid requests: the most nodes that ever served it
    (``bad_nodes_max`` <= the canary count), the time from when the canary had the requests to
    judge it to every node back on the previous version (``rollback_s``), the failed valid
    requests on nodes outside the canary;
(c) a signature break (the input renamed): rolled back;
(d) one whose outputs are NaN on its warmup file: the requests it answered (validation);
(e) one 5x slower: rolled back on latency;
(f) one with no traffic of its own (every request names the label): held, then paused —
    ``unjudged_completions`` counts the rollouts of the whole run that completed with a stage
    that was not judged (goal 0).
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import requests

from bench.common import median, table
from modelsync.client import PredictClient
from modelsync.dev.emulator import GCSEmulator
from modelsync.dev.procs import MasterSpec, Node, start_master
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

ADMIN, NODE = "bench-admin-token-0123456789", "bench-node-token-0123456789"
MIN_REQUESTS = 60
LABELLED, BAD = 0.3, 0.08  # the load's shares: requests naming `stable`; client errors
RPS = 12.0  # per node


@dataclass(frozen=True)
class Answer:
    t: float
    node: str
    labelled: bool
    bad: bool  # the client's mistake, on purpose
    version: int | None  # the answering version (None: it failed)
    ok: bool


class Load:
    """Predict on every node, bounded in count and time; each answer noted with its version.
    ``labelled`` may change while it runs (case f: every request names the label)."""

    def __init__(self, nodes: list[Node], rps: float, limit_s: float) -> None:
        self.nodes, self.rps, self.deadline = nodes, rps, time.monotonic() + limit_s
        self.labelled = LABELLED
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[Answer] = []
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in nodes]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def _run(self, node: Node) -> None:
        client = PredictClient(f"127.0.0.1:{node.grpc_port}")
        rng = random.Random(node.name)
        for _ in range(1_000_000):
            if self.stop.is_set() or time.monotonic() > self.deadline:
                break
            started = time.monotonic()
            labelled, bad = rng.random() < self.labelled, rng.random() < BAD
            inputs = {"nope" if bad else "x": [rng.random()]}
            version: int | None = None
            with contextlib.suppress(grpc.RpcError):  # wrong on purpose, or a failure to count
                version, _out = client.predict(
                    "demo", inputs, label="stable" if labelled else None, timeout_s=10
                )
            with self.lock:
                self.answers.append(
                    Answer(time.time(), node.name, labelled, bad, version, version is not None)
                )
            self.stop.wait(max(0.0, 1 / self.rps - (time.monotonic() - started)))
        client.close()

    def since(self, t0: float) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if a.t >= t0]

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

    def call(self, method: str, path: str, body: Any = None) -> Any:
        r = self.session.request(method, f"{self.url}{path}", json=body, timeout=30)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def rollout(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.call("GET", "/v1/models/demo/rollout")
        return doc

    def available(self) -> dict[str, set[int]]:
        nodes = self.call("GET", "/v1/nodes")["nodes"]
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


def judged_from(answers: list[Answer], canary: set[str], version: int, needed: int) -> float | None:
    """When the canary had answered ``needed`` requests that were the new version's to answer
    (naming only the model): the earliest the judge could have decided."""
    n = 0
    for a in answers:
        if a.node in canary and not a.labelled and (a.version in (version, None)):
            n += 1
            if n >= needed:
                return a.t
    return None


def unjudged(history: list[dict[str, Any]]) -> bool:
    """A rollout whose stages moved on without a judgement of the new version's own requests
    (operator's promotes aside)."""
    return any("not judged" in h["reason"] for h in history)


def run(quick: bool) -> dict[str, Any]:
    from modelsync.dev.models import (
        make_erroring_model,
        make_linear_model,
        make_nan_model,
    )

    n_nodes, bake, n_good = (3, 4.0, 3) if quick else (6, 15.0, 20)
    spec: dict[str, Any] = {
        "canary_nodes": 1,
        "waves": [0.5, 1.0],
        "bake_s": bake,
        "min_requests": MIN_REQUESTS,
        "max_error_rate": 0.05,
        "max_p99_ratio": 2.0,
        "max_wait_s": 60,  # a busy machine's load may need more than a few bakes to judge
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_s, GCSEmulator() as emu:
        tmp = Path(tmp_s)
        store = GCSStore(StoreSettings(bucket="bench", emulator_host=emu.url))
        store.ensure_bucket()
        src = {
            "v1": make_linear_model(tmp / "src1", 2.0, 1.0),
            "erroring": make_erroring_model(tmp / "err", 4.0, 1.0, 0.65),  # x >= 0.65: 35 %
            "renamed": make_linear_model(tmp / "renamed", 4.0, 1.0, input_name="features"),
            "nan": make_nan_model(tmp / "nan", warmup=True),
        }
        for k in range(n_good):
            src[f"good{k}"] = make_linear_model(tmp / f"good{k}", 3.0 + k / 10, 1.0)
        cluster = Cluster(tmp, emu.url, n_nodes)
        load = None
        try:
            publish(store, src["v1"], "demo", PublishOptions(version=1))
            cluster.wait(
                lambda: (
                    len(cluster.available()) == n_nodes
                    and all(vs == {1} for vs in cluster.available().values())
                ),
                180,
                "v1 everywhere",
            )
            cluster.call("PUT", "/v1/models/demo/labels/stable", {"version": 1})
            cluster.call("PUT", "/v1/models/demo/rollout", spec)
            cluster.wait(lambda: cluster.rollout()["status"] == "complete", 60, "adopted")
            load = Load(cluster.nodes, rps=RPS, limit_s=3600).start()
            figures = scenarios(cluster, load, store, src, spec, tmp, n_good)
        finally:
            if load is not None:
                load.close()
            cluster.close()
    figures.update(
        {"nodes": n_nodes, "bake_s": bake, "total_seconds": round(time.monotonic() - started, 1)}
    )
    table(
        f"rollout: {n_nodes} nodes, canary 1, waves [0.5, 1.0], bake {bake:g} s, Predict load "
        f"on every node ({LABELLED:.0%} naming `stable` -> v1, {BAD:.0%} client errors)",
        [(k, v) for k, v in figures.items()],
    )
    return figures


class Versions:
    """The next version number to publish."""

    def __init__(self) -> None:
        self.next = 2

    def take(self) -> int:
        self.next += 1
        return self.next - 1


def outcome(cluster: Cluster, version: int, timeout_s: float) -> dict[str, Any]:
    """The rollout of ``version`` once it ended (complete, rolled back or paused)."""

    def ended() -> dict[str, Any] | None:
        r = cluster.rollout()
        done = r["status"] in ("complete", "rolled_back", "paused")
        return r if r["version"] == version and done else None

    doc: dict[str, Any] = cluster.wait(ended, timeout_s, f"v{version} ended")
    return doc


def back_on(cluster: Cluster, version: int, what: str) -> float:
    t: float = cluster.wait(
        lambda: all(version in vs for vs in cluster.available().values()) and time.time(),
        120,
        what,
    )
    return t


def scenarios(
    cluster: Cluster,
    load: Load,
    store: GCSStore,
    src: dict[str, Path],
    spec: dict[str, Any],
    tmp: Path,
    n_good: int,
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    versions = Versions()
    unjudged_completions = 0
    # (a) good versions in a row: canary, a wave, everyone; each judged, none rolled back
    durations, rollbacks, reasons = [], 0, []
    stable = 1
    for k in range(n_good):
        version = versions.take()
        t0 = time.time()
        publish(store, src[f"good{k}"], "demo", PublishOptions(version=version))
        r = outcome(cluster, version, 900)
        if r["status"] == "complete":
            stable = version
            durations.append(time.time() - t0)
            unjudged_completions += unjudged(r["history"])
        else:
            rollbacks += 1
            reasons.append(r["reason"][:120])
            if r["status"] == "paused":
                cluster.call("POST", "/v1/models/demo/rollout/abort")
        cluster.wait(
            lambda s=stable: all(s in vs for vs in cluster.available().values()),
            120,
            f"v{stable} everywhere",
        )
    figures["good_versions"] = n_good
    figures["false_rollbacks"] = rollbacks
    if reasons:
        figures["false_rollback_reason"] = reasons[0]
    figures["rollout_complete_s"] = round(durations[0], 2) if durations else None
    figures["rollout_complete_p50_s"] = round(median(durations), 2) if durations else None
    minimum = spec["bake_s"] * 2  # two baked stages: the canary and the half-fleet wave
    figures["rollout_minimum_s"] = minimum
    if durations:
        figures["rollout_overhead_s"] = round(median(durations) - minimum, 2)
    baseline_p50 = cluster.call("GET", "/v1/models/demo/metrics?since=2m")["total"]["p50_ms"]

    # (b) 35 % of valid requests fail, (c) a signature break, (d) NaN outputs, (e) 5x slower
    from modelsync.dev.models import make_slow_model

    slow_ms = 4 * float(baseline_p50 or 1.0)  # on top of the baseline: 5x its median
    src["slow"] = make_slow_model(tmp / "slow", 5.0, 1.0, slow_ms)
    for key in ("erroring", "renamed", "nan", "slow"):
        version = versions.take()
        t0 = time.time()
        publish(store, src[key], "demo", PublishOptions(version=version))
        r = outcome(cluster, version, 600)
        if r["status"] == "paused":  # not judged in time: a miss, and out of the way
            cluster.call("POST", "/v1/models/demo/rollout/abort")
        elif r["status"] == "complete":  # a miss: it is the stable version now
            stable = version
            unjudged_completions += unjudged(r["history"])
        back = back_on(cluster, stable, f"{key}: all on v{stable}")
        answers = load.since(t0)
        served_by = {a.node for a in answers if a.version == version}
        canary = set(r["nodes_on_version"])
        rolled_back = r["status"] == "rolled_back"
        if key == "erroring":
            ready = judged_from(answers, canary, version, MIN_REQUESTS) or back
            figures["bad_nodes_max"] = len(served_by | canary)
            figures["rollback_s"] = round(back - ready, 2)
            figures["failed_predicts_outside_canary"] = sum(
                1 for a in answers if not a.ok and not a.bad and a.node not in canary
            )
            figures["errors_rolled_back"] = rolled_back
            figures["errors_reason"] = r["reason"][:100]
        elif key == "renamed":
            ready = judged_from(answers, canary, version, MIN_REQUESTS) or back
            figures["signature_break_rolled_back"] = rolled_back
            figures["signature_break_nodes_max"] = len(served_by | canary)
            figures["signature_break_rollback_s"] = round(back - ready, 2)
            figures["signature_break_reason"] = r["reason"][:100]
        elif key == "nan":
            figures["unvalidated_served"] = sum(1 for a in answers if a.version == version)
            figures["nan_reason"] = r["reason"][:80]
        else:
            latency = r["reason"].startswith(("p99", "p95", "p90", "p50"))
            figures["slow_ms_added"] = round(slow_ms, 2)
            figures["slow_rolled_back_on_latency"] = rolled_back and latency
            figures["slow_rollback_s"] = round(back - t0, 2)
            figures["slow_reason"] = r["reason"][:100]

    # (f) no traffic of its own: every request names the label; held, then paused
    load.labelled = 1.0
    version = versions.take()
    t0 = time.time()
    publish(store, src["good0"], "demo", PublishOptions(version=version))
    r = outcome(cluster, version, 600)
    figures["no_traffic_status"] = r["status"]
    figures["no_traffic_paused"] = r["status"] == "paused"
    figures["no_traffic_hold_s"] = round(time.time() - t0, 2)
    figures["no_traffic_reason"] = r["reason"][:100]
    if r["status"] == "complete":
        unjudged_completions += unjudged(r["history"]) or 1  # it passed without its own traffic
    else:
        cluster.call("POST", "/v1/models/demo/rollout/abort")
    load.labelled = LABELLED
    figures["unjudged_completions"] = unjudged_completions
    figures["requests_sent"] = len(load.since(0))
    per_node: dict[str, int] = defaultdict(int)
    for a in load.since(0):
        per_node[a.node] += 1
    figures["nodes_seen"] = len(per_node)
    return figures
