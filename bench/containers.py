"""containers: a container model on the one-node Swarm (the scikit-learn example, built and
pushed to the local registry first; modelsync.dev.containers). Measures ``modelsync publish
--image`` to the gateway's first answer (the image already on the node: what the master and
Swarm add), the gateway's overhead over calling the container's ``/invocations`` directly at
concurrency 1 and 8 (turns in short rounds, as bench/gateway.py), and the running container's
memory (``docker stats``)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from bench.common import percentile, table
from bench.gateway import _http_call, load
from modelsync.dev.containers import ContainerCluster, example_image, sh

LEVELS = (1, 8)
ROWS = [[5.1, 3.5, 1.4, 0.2]]


def _memory_mb(service: str) -> float:
    (container,) = sh(
        "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}"
    ).stdout.split()
    out = sh("docker", "stats", "--no-stream", "--format", "{{json .}}", container).stdout
    used = json.loads(out)["MemUsage"].split("/")[0].strip()  # "61.2MiB"
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 2**20}
    for unit, factor in units.items():
        if used.endswith(unit):
            return float(used[: -len(unit)]) * factor
    raise ValueError(f"docker stats: {used!r}")


def run(quick: bool) -> dict[str, Any]:
    rounds, seconds = (2, 1.0) if quick else (4, 3.0)
    image = example_image()
    with (
        tempfile.TemporaryDirectory() as tmp,
        ContainerCluster(tmp, f"msbench{os.getpid()}") as cluster,
    ):
        started = time.monotonic()
        cluster.publish(image, "iris")
        cluster.first_answer("iris", ROWS, 600)
        first_answer_s = time.monotonic() - started
        (service,) = cluster.api("GET", "/v1/containers")[1]["services"]
        body = json.dumps({"instances": ROWS}).encode()
        makers = {
            "direct": _http_call(service["host_port"], "/invocations", body),
            "gateway": _http_call(
                int(cluster.gateway_url.rsplit(":", 1)[1]), "/model/iris/invocations", body
            ),
        }
        for make in makers.values():
            load(make, 4, 1.0)
        results: dict[tuple[str, int], tuple[list[float], int, float]] = {}
        for c in LEVELS:
            for r in range(rounds):
                for name in ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct"):
                    lat, err, elapsed = load(makers[name], c, seconds)
                    prev = results.get((name, c), ([], 0, 0.0))
                    results[(name, c)] = (prev[0] + lat, prev[1] + err, prev[2] + elapsed)
        memory = _memory_mb(service["service"])
    figures: dict[str, Any] = {"publish_to_first_answer_s": round(first_answer_s, 2)}
    for (name, c), (lat, err, elapsed) in results.items():
        figures[f"{name}_c{c}_p50_ms"] = percentile(lat, 50) * 1000
        figures[f"{name}_c{c}_p99_ms"] = percentile(lat, 99) * 1000
        figures[f"{name}_c{c}_rps"] = len(lat) / elapsed
        figures[f"{name}_c{c}_errors"] = err
    figures["gateway_overhead_p50_ms"] = figures["gateway_c1_p50_ms"] - figures["direct_c1_p50_ms"]
    figures["errors"] = sum(v for k, v in figures.items() if k.endswith("_errors"))
    figures["container_MB"] = round(memory, 1)
    rows: list[tuple[str, Any]] = [
        ("publish --image -> first answer through the gateway, s", first_answer_s)
    ]
    for c in LEVELS:
        for name in ("direct", "gateway"):
            rows.append(
                (
                    f"c={c} {name}: p50 / p99 ms, req/s",
                    f"{figures[f'{name}_c{c}_p50_ms']:.3f} / "
                    f"{figures[f'{name}_c{c}_p99_ms']:.3f}, {figures[f'{name}_c{c}_rps']:.0f}",
                )
            )
    rows += [
        ("gateway minus direct, p50 ms at c=1 (goal <= 1)", figures["gateway_overhead_p50_ms"]),
        ("errors", figures["errors"]),
        ("running container's memory, MB (scikit-learn iris)", figures["container_MB"]),
    ]
    table(
        f"containers: sklearn example, {rounds} rounds x {seconds:g} s per target and level", rows
    )
    return figures
