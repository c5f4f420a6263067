"""gateway: what the gateway adds over calling TF Serving directly. The compatible model server
(a real two-input SavedModel, y = 2x + 3n) and the gateway run as processes on 127.0.0.1; at
concurrency 1, 8 and 32 it compares direct TF Serving REST predict, direct gRPC Predict, the
gateway's MLflow route (``inputs``) and the gateway's TF Serving REST passthrough. The four
targets take turns in short rounds so that drift on the machine hits them alike."""

from __future__ import annotations

import http.client
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import percentile, rss_mb, table
from modelsync.client import PredictClient
from modelsync.dev.emulator import free_port
from modelsync.dev.procs import ManagedProcess, start_model_server, wait_http_ok

TARGETS = ("rest", "grpc", "mlflow", "passthrough")
LEVELS = (1, 8, 32)
ROW = {"x": [1.5], "n": [2]}


def _http_call(port: int, path: str, body: bytes) -> Callable[[], Callable[[], None]]:
    """A factory of per-thread callables, each on its own keep-alive connection."""

    def make() -> Callable[[], None]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"}

        def call() -> None:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{resp.status}: {data[:100]!r}")

        return call

    return make


def _grpc_call(client: PredictClient) -> Callable[[], Callable[[], None]]:
    req = client.request("two", {"x": [1.5], "n": [2]})

    def make() -> Callable[[], None]:
        return lambda: client.call(req, timeout_s=30)

    return make


def load(
    make: Callable[[], Callable[[], None]],
    concurrency: int,
    seconds: float,
    max_requests: int = 500_000,
) -> tuple[list[float], int, float]:
    """(latencies s, errors, elapsed s) of ``concurrency`` threads, bounded in count and time."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    calls = [make() for _ in range(concurrency)]
    per_thread = max_requests // concurrency
    stop = time.monotonic() + seconds

    def worker(call: Callable[[], None]) -> None:
        mine: list[float] = []
        bad = 0
        for _ in range(per_thread):
            if time.monotonic() > stop:
                break
            t = time.perf_counter()
            try:
                call()
                mine.append(time.perf_counter() - t)
            except Exception:
                bad += 1
        with lock:
            lat.extend(mine)
            errors[0] += bad

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    return lat, errors[0], time.monotonic() - started


def run(quick: bool) -> dict[str, Any]:
    from modelsync.dev.models import make_two_input_model

    rounds, seconds = (2, 1.5) if quick else (4, 4.0)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        make_two_input_model(tmp / "models" / "two" / "1", 2.0, 3.0)
        server = start_model_server(
            tmp, model_name="two", model_base_path=str(tmp / "models" / "two")
        )
        rest_port = server.rest_port  # type: ignore[attr-defined]
        grpc_target = f"127.0.0.1:{server.grpc_port}"  # type: ignore[attr-defined]
        port = free_port()
        gateway = ManagedProcess(
            "gateway",
            [sys.executable, "-m", "cli", "gateway", "--port", str(port)],
            tmp / "gateway.log",
            env={
                "MODELSYNC_TFSERVING": grpc_target,
                "MODELSYNC_TFSERVING_REST": f"127.0.0.1:{rest_port}",
                "MODELSYNC_LOG_LEVEL": "warning",
            },
        ).start()
        client = PredictClient(grpc_target)
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, gateway)
            rest_body = json.dumps({"inputs": ROW}).encode()
            makers = {
                "rest": _http_call(rest_port, "/v1/models/two:predict", rest_body),
                "grpc": _grpc_call(client),
                "mlflow": _http_call(port, "/model/two/invocations", rest_body),
                "passthrough": _http_call(port, "/v1/models/two:predict", rest_body),
            }
            for make in makers.values():  # warm up every path (and the gateway's caches)
                load(make, 4, 1.0)
            results: dict[tuple[str, int], tuple[list[float], int, float]] = {}
            for c in LEVELS:
                for r in range(rounds):
                    order = TARGETS if r % 2 == 0 else TARGETS[::-1]
                    for name in order:
                        lat, err, elapsed = load(makers[name], c, seconds)
                        prev = results.get((name, c), ([], 0, 0.0))
                        results[(name, c)] = (prev[0] + lat, prev[1] + err, prev[2] + elapsed)
            gateway_rss = rss_mb(gateway.pid)
        finally:
            client.close()
            gateway.stop()
            server.stop()
    figures: dict[str, Any] = {}
    rows: list[tuple[str, Any]] = []
    for (name, c), (lat, err, elapsed) in results.items():
        p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
        figures.update(
            {
                f"{name}_c{c}_p50_ms": p50,
                f"{name}_c{c}_p99_ms": p99,
                f"{name}_c{c}_rps": len(lat) / elapsed,
                f"{name}_c{c}_errors": err,
            }
        )
    for c in LEVELS:
        for name in TARGETS:
            rows.append(
                (
                    f"c={c:<2} {name}: p50 / p99 ms, req/s, errors",
                    f"{figures[f'{name}_c{c}_p50_ms']:.3f} / "
                    f"{figures[f'{name}_c{c}_p99_ms']:.3f}, "
                    f"{figures[f'{name}_c{c}_rps']:.0f}, {figures[f'{name}_c{c}_errors']}",
                )
            )
    figures["gateway_overhead_p50_ms"] = figures["mlflow_c1_p50_ms"] - figures["rest_c1_p50_ms"]
    figures["passthrough_overhead_p50_ms"] = (
        figures["passthrough_c1_p50_ms"] - figures["rest_c1_p50_ms"]
    )
    figures["errors"] = sum(v for k, v in figures.items() if k.endswith("_errors"))
    figures["gateway_rss_MB"] = gateway_rss
    rows += [
        (
            "gateway MLflow minus direct REST, p50 ms at c=1 (goal <= 1)",
            figures["gateway_overhead_p50_ms"],
        ),
        (
            "gateway passthrough minus direct REST, p50 ms at c=1",
            figures["passthrough_overhead_p50_ms"],
        ),
        ("gateway RSS MB", gateway_rss),
    ]
    table(
        f"gateway: {rounds} rounds x {seconds:g} s per target and level, one row per request", rows
    )
    return figures
