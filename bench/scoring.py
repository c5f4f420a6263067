"""scoring: gRPC Predict on the compatible model server at concurrency 1, 8 and 32, against the
same signature called in-process (the floor); then the same load while the version rolls over
five times (zero errors expected; the p99 ratio shows what a swap costs); then the gateway's
overhead against direct TF Serving REST and gRPC at the same levels (``bench.gateway``, also
runnable alone as ``python -m bench gateway``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, table
from modelsync.client import PredictClient
from modelsync.dev.procs import start_model_server

_INPROCESS = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
x = tf.constant([1.0])
for _ in range(200):
    fn(x=x)
lat = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); fn(x=x); lat.append(time.perf_counter() - t)
lat.sort()
print(json.dumps({"p50": lat[len(lat) // 2]}))
"""


def load(
    target: str, concurrency: int, seconds: float, max_requests: int = 2_000_000
) -> tuple[list[float], list[str], float]:
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    client = PredictClient(target)
    req = client.request("demo", {"x": [1.0]})
    per_thread = max_requests // concurrency

    def worker() -> None:
        mine: list[float] = []
        for _ in range(per_thread):
            if time.monotonic() > stop:
                break
            t = time.perf_counter()
            try:
                client.call(req, timeout_s=10)
                mine.append(time.perf_counter() - t)
            except Exception as exc:
                with lock:
                    errors.append(str(exc)[:120])
        with lock:
            lat.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed = time.monotonic() - started
    client.close()
    return lat, errors, elapsed


def run(quick: bool) -> dict[str, Any]:
    from modelsync.dev.models import make_linear_model

    seconds = 5.0 if quick else 15.0
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        sources = {v: make_linear_model(tmp / "src" / str(v), float(v), 1.0) for v in range(1, 7)}
        root = tmp / "models" / "demo"
        shutil.copytree(sources[1], root / "1")
        floor = json.loads(
            subprocess.run(
                [sys.executable, "-c", _INPROCESS, str(sources[1]), "3000" if quick else "10000"],
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            )
            .stdout.strip()
            .splitlines()[-1]
        )["p50"]
        proc = start_model_server(
            tmp,
            model_name="demo",
            model_base_path=str(root.parent / "demo"),
            flags=["--file_system_poll_wait_seconds=1"],
        )
        target = f"127.0.0.1:{proc.grpc_port}"  # type: ignore[attr-defined]
        try:
            load(target, 4, 2.0)  # warm up
            levels = {}
            for c in (1, 8, 32):
                lat, errors, elapsed = load(target, c, seconds)
                levels[c] = {
                    "p50": percentile(lat, 50),
                    "p99": percentile(lat, 99),
                    "rps": len(lat) / elapsed,
                    "errors": len(errors),
                }
            # the same load (8 clients) while the version rolls over 5 times
            roll_lat: list[float] = []
            roll_errors: list[str] = []
            swaps: list[float] = []

            def roll() -> None:
                for v in range(2, 7):
                    time.sleep(seconds / 6)
                    t = time.monotonic()
                    shutil.copytree(sources[v], root / str(v))
                    swaps.append(t)

            roller = threading.Thread(target=roll)
            roller.start()
            lat, roll_errors, elapsed = load(target, 8, seconds + 4)
            roller.join()
            roll_lat = lat
            final = PredictClient(target)
            served_version = final.predict("demo", {"x": [1.0]})[0]
            final.close()
        finally:
            proc.stop()
    steady_p99 = levels[8]["p99"]
    figures = {
        "predict_p50_ms": levels[8]["p50"] * 1000,
        "predict_p99_ms": steady_p99 * 1000,
        "predict_rps": levels[8]["rps"],
        "inprocess_p50_ms": floor * 1000,
        "rollover_errors": len(roll_errors),
        "rollover_p99_ratio": percentile(roll_lat, 99) / steady_p99,
        "rollovers": len(swaps),
        "final_version": served_version,
        **{
            f"c{c}_{k}": (v * 1000 if k in ("p50", "p99") else v)
            for c, lv in levels.items()
            for k, v in lv.items()
        },
    }
    rows = [
        (
            f"concurrency {c}: p50 / p99 ms, req/s, errors",
            f"{lv['p50'] * 1000:.2f} / {lv['p99'] * 1000:.2f}, {lv['rps']:.0f}, {lv['errors']}",
        )
        for c, lv in levels.items()
    ]
    rows += [
        ("in-process signature call p50 ms (floor)", floor * 1000),
        ("during 5 rollovers (8 clients): errors", len(roll_errors)),
        ("during 5 rollovers: p99 ms", percentile(roll_lat, 99) * 1000),
        ("rollover p99 / steady p99", figures["rollover_p99_ratio"]),
        ("version served at the end", served_version),
    ]
    table(
        f"scoring: {seconds:.0f} s per level, gRPC Predict y = a*x + b, one request = 1 row", rows
    )
    from bench import gateway

    through = gateway.run(quick)
    through["gateway_errors"] = through.pop("errors")
    return {**figures, **through}
