"""Request telemetry end to end: a node under Predict load (some requests failing on purpose),
its config manager reading TF Serving's Prometheus page, heartbeats, the master's series."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from helpers import wait_for

from modelsync.client import to_tensor
from modelsync.dev.procs import MasterSpec, Node, start_master
from modelsync.protos import serving_protos
from modelsync.publish import publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from modelsync.telemetry import LATENCY_BOUNDS_US, quantile_ms, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN, READ, NODE = "admin-token-0123456789", "read-token-0123456789", "node-token-0123456789"


def metrics(url: str, query: str = "since=15m") -> dict[str, Any]:
    req = urllib.request.Request(
        f"{url}/v1/models/demo/metrics?{query}", headers={"Authorization": f"Bearer {READ}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        doc: dict[str, Any] = json.loads(r.read())
    return doc


class Load:
    """Predict calls over gRPC, timed on the client; ``bad`` ones use an unknown input name
    (TF Serving answers INVALID_ARGUMENT)."""

    def __init__(self, port: int) -> None:
        p = serving_protos()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.predict = self.channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=p.PredictResponse.FromString,
        )
        self.good, self.bad = p.PredictRequest(), p.PredictRequest()
        for req, name in ((self.good, "x"), (self.bad, "no_such_input")):
            req.model_spec.name = "demo"
            to_tensor(np.array([1.0], dtype=np.float32), req.inputs[name])
        self.latencies_ms: list[float] = []
        self.failed = 0

    def run(self, good: int, bad: int) -> None:
        deadline = time.monotonic() + 120
        for i in range(good + bad):  # bounded in count and time
            assert time.monotonic() < deadline, "load took too long"
            if i % ((good + bad) // max(bad, 1)) == 0 and self.failed < bad:
                with pytest.raises(grpc.RpcError) as info:
                    self.predict(self.bad, timeout=10)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                self.failed += 1
                continue
            started = time.perf_counter()
            self.predict(self.good, timeout=10)
            self.latencies_ms.append((time.perf_counter() - started) * 1000)

    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99))


class Total(dict[str, Any]):
    """The master's total when it has the errors wanted; falsy (and shown in a failure) when not."""

    def __init__(self, doc: dict[str, Any], want: int) -> None:
        super().__init__(doc)
        self.want = want

    def __bool__(self) -> bool:
        return bool(self.get("errors") == self.want)


def errors_are(url: str, want: int, node: Node) -> Total:
    """The master's total, and (shown when the wait fails) the node's reading and outbox."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.cm_port}/status", timeout=10) as r:
        reading = json.loads(r.read())["telemetry"]
    page = urllib.request.urlopen(
        f"http://127.0.0.1:{node.rest_port}/monitoring/prometheus/metrics", timeout=30
    ).read()
    counts = [
        ln
        for ln in page.decode().splitlines()
        if ln.startswith(":tensorflow:serving:request_count")
    ]
    return Total({**metrics(url)["total"], "node_telemetry": reading, "page": counts}, want)


def cm_reads(node: Node) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.cm_port}/status", timeout=10) as r:
        return int(json.loads(r.read())["telemetry"]["reads"])


def available(node: Node) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{node.cm_port}/status", timeout=10) as r:
        view = json.loads(r.read())["tfserving_view"]
    return view.get("demo", {}).get("1", {}).get("state") == "AVAILABLE"


def bucket(ms: float) -> int:
    return next(
        (i for i, b in enumerate(LATENCY_BOUNDS_US) if ms * 1000 < b), len(LATENCY_BOUNDS_US)
    )


@pytest.mark.timeout(400)
def test_node_load_shows_in_the_master_series_and_survives_a_restart(
    store: GCSStore,
    store_settings: StoreSettings,
    model_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    master = start_master(
        tmp_path,
        MasterSpec(
            bucket=store_settings.bucket,
            emulator_host=store_settings.emulator_host or "",
            admin_token=ADMIN,
            node_secret=NODE,
            read_token=READ,
            catalog_s=0.5,
        ),
    )
    node = Node(
        tmp_path / "node",
        bucket=store_settings.bucket,
        emulator_host=store_settings.emulator_host or "",
        name="node-1",
        poll_s=0.5,
        master_url=master.url,
        node_secret=NODE,  # type: ignore[attr-defined]
        extra_env={"MODELSYNC_HEARTBEAT_S": "1", "MODELSYNC_TELEMETRY_S": "1"},
    )
    load = None
    try:
        node.start()
        publish(store, model_factory(2.0), "demo")
        load = Load(node.grpc_port)
        wait_for(lambda: available(node), 60, "v1 AVAILABLE")  # no Predict before the load
        # the config manager's first read of TF Serving's page is its baseline: requests before
        # it belong to no interval (README "Request telemetry"); the load comes after one
        reads = cm_reads(node)
        wait_for(lambda: cm_reads(node) > reads, 30, "a read of TF Serving's page after AVAILABLE")
        url = master.url  # type: ignore[attr-defined]
        load.run(good=400, bad=40)
        sent = 440
        # within two telemetry intervals (plus a heartbeat) the master has it all
        total = wait_for(lambda: errors_are(url, 40, node), 30, "40 errors in the master's total")
        assert total["requests"] <= sent
        assert abs(total["requests"] - sent) <= 0.1 * sent
        assert total["errors_by_code"] == {"INVALID_ARGUMENT": 40}
        assert total["by_version"]["1"]["requests"] == total["requests"]
        # server-side p99 from the merged buckets: the one TF Serving's own page gives for the
        # same requests (exact, whatever the machine's load), and at or below the client's
        page = urllib.request.urlopen(
            f"http://127.0.0.1:{node.rest_port}/monitoring/prometheus/metrics", timeout=30
        ).read()
        served = snapshot(page, {"demo"}).models["demo"].latency
        assert total["p99_ms"] == round(quantile_ms(0.99, served) or 0.0, 3)
        assert bucket(total["p99_ms"]) <= bucket(load.p99_ms())
        cluster = urllib.request.urlopen(
            urllib.request.Request(
                f"{url}/v1/cluster", headers={"Authorization": f"Bearer {READ}"}
            ),
            timeout=30,
        )
        assert json.loads(cluster.read())["models"]["demo"]["last_minute"]["requests"] > 0

        # TF Serving restarts: its counters start from zero again; nothing negative, no spike
        assert node.model_server is not None
        node.model_server.kill()
        node.start_model_server()
        load.channel.close()
        load = Load(node.grpc_port)
        wait_for(lambda: available(node), 60, "v1 AVAILABLE after the restart")
        load.run(good=100, bad=10)
        after = wait_for(lambda: errors_are(url, 50, node), 30, "50 errors after the restart")
        assert after["requests"] == sent + 110
        series = metrics(url, "since=15m")["series"]
        assert all(p["requests"] >= 0 and p["errors"] >= 0 for p in series)
        assert max(p["requests"] for p in series) <= after["requests"]
        node_series = metrics(url, "since=15m&node=node-1&step=1")
        assert node_series["total"]["requests"] == after["requests"]
    finally:
        if load is not None:
            load.channel.close()
        node.stop()
        master.stop()
