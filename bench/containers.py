"""containers: container models on the one-node Swarm: the scikit-learn, R (plumber) and Spark
examples (``examples/``, built and pushed to the local registry first; modelsync.dev.containers;
``--quick``: scikit-learn only). Per example: ``modelsync publish --image`` to the gateway's
first answer (the image already on the node: what the master, Swarm and the model's own start
add), the gateway's overhead over calling the container's ``/invocations`` directly at
concurrency 1 and 8 (turns in short rounds, as bench/gateway.py), requests/s at concurrency 8,
and the running container's memory (``docker stats``)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from bench.common import percentile, table
from bench.gateway import _http_call, load
from modelsync.dev.containers import ContainerCluster, example_image, sh

LEVELS = (1, 8)


@dataclass(frozen=True)
class Example:
    name: str  # examples/<name>
    model: str
    rows: list[list[float]]
    extra: tuple[str, ...] = ()  # publish options
    first_answer_s: float = 600  # bound on the wait for its first answer


EXAMPLES = (
    Example("sklearn", "iris", [[5.1, 3.5, 1.4, 0.2]]),
    Example("r", "mpg", [[2.62, 110.0]], ("--memory", "512M")),
    # a JVM and Spark's local session to start before /ping answers
    Example("spark", "pipeline", [[1.0, 2.0]], ("--memory", "1536M"), 900),
)


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


def _measure(
    cluster: ContainerCluster, ex: Example, image: str, rounds: int, seconds: float
) -> dict[str, Any]:
    """One example published, waited for, loaded and measured; its service stopped after."""
    started = time.monotonic()
    cluster.publish(image, ex.model, *ex.extra)
    cluster.first_answer(ex.model, ex.rows, ex.first_answer_s)
    first_answer_s = time.monotonic() - started
    (service,) = (
        s for s in cluster.api("GET", "/v1/containers")[1]["services"] if s["model"] == ex.model
    )
    body = json.dumps({"instances": ex.rows}).encode()
    makers = {
        "direct": _http_call(service["host_port"], "/invocations", body),
        "gateway": _http_call(
            int(cluster.gateway_url.rsplit(":", 1)[1]), f"/model/{ex.model}/invocations", body
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
    status, doc = cluster.api("POST", f"/v1/models/{ex.model}/stop", admin=True)
    assert status == 200, doc  # one example's container at a time on two cores
    figures: dict[str, Any] = {"publish_to_first_answer_s": round(first_answer_s, 2)}
    for (name, c), (lat, err, elapsed) in results.items():
        figures[f"{name}_c{c}_p50_ms"] = percentile(lat, 50) * 1000
        figures[f"{name}_c{c}_p99_ms"] = percentile(lat, 99) * 1000
        figures[f"{name}_c{c}_rps"] = len(lat) / elapsed
        figures[f"{name}_c{c}_errors"] = err
    figures["gateway_overhead_p50_ms"] = figures["gateway_c1_p50_ms"] - figures["direct_c1_p50_ms"]
    figures["errors"] = sum(v for k, v in figures.items() if k.endswith("_errors"))
    figures["container_MB"] = round(memory, 1)
    return figures


def run(quick: bool) -> dict[str, Any]:
    rounds, seconds = (2, 1.0) if quick else (4, 3.0)
    examples = EXAMPLES[:1] if quick else EXAMPLES
    images = {ex.name: example_image(ex.name) for ex in examples}
    per: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        ContainerCluster(tmp, f"msbench{os.getpid()}", ready_s=900) as cluster,
    ):
        for ex in examples:
            per[ex.name] = _measure(cluster, ex, images[ex.name], rounds, seconds)
    first = per[examples[0].name]
    figures: dict[str, Any] = dict(first)  # the scikit-learn example's, under the plain names
    for name, f in per.items():
        for key in (
            "publish_to_first_answer_s",
            "gateway_overhead_p50_ms",
            "gateway_c8_rps",
            "direct_c8_rps",
            "container_MB",
        ):
            figures[f"{name}_{key}"] = f[key]
    # the goal's figure stays the scikit-learn example's: its answers take under a millisecond,
    # so a millisecond of the gateway's shows; R's take ~50 ms and Spark's ~130 ms (a DataFrame
    # per request in local mode), where a difference of p50s is that model's noise, not the
    # gateway's (the same code path: reported per example, not judged)
    figures["errors"] = sum(f["errors"] for f in per.values())
    figures["examples"] = list(per)
    rows: list[tuple[str, Any]] = []
    for name, f in per.items():
        rows.append(
            (
                f"{name}: publish --image -> first answer through the gateway, s",
                f["publish_to_first_answer_s"],
            )
        )
        for c in LEVELS:
            for target in ("direct", "gateway"):
                rows.append(
                    (
                        f"{name}: c={c} {target}: p50 / p99 ms, req/s",
                        f"{f[f'{target}_c{c}_p50_ms']:.3f} / "
                        f"{f[f'{target}_c{c}_p99_ms']:.3f}, {f[f'{target}_c{c}_rps']:.0f}",
                    )
                )
        rows += [
            (
                f"{name}: gateway minus direct, p50 ms at c=1 (goal <= 1)",
                f["gateway_overhead_p50_ms"],
            ),
            (f"{name}: errors", f["errors"]),
            (f"{name}: the running container's memory, MB", f["container_MB"]),
        ]
    table(
        f"containers: {', '.join(per)}, {rounds} rounds x {seconds:g} s per target and level",
        rows,
    )
    return figures
