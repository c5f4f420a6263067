"""``python -m bench NAME [--quick]`` runs one benchmark on 127.0.0.1 and prints a table, then,
as its last line, one JSON object of figures. ``all`` runs them all; ``--update-readme``
rewrites the benchmark table in README.md."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import emit, machine

BENCHMARKS = {
    "propagation": "bench.propagation",
    "download": "bench.download",
    "idle_poll": "bench.idle_poll",
    "master": "bench.master_load",
    "scoring": "bench.scoring",
    "footprint": "bench.footprint",
    "gateway": "bench.gateway",
    "rollout": "bench.rollout",
    "jobs": "bench.jobs",
    "cluster": "bench.cluster",
    "containers": "bench.containers",
}
# not in ``all``: gateway runs inside scoring; cluster needs root and the multi-node Swarm of
# `make cluster` (it brings one up, and down again, when none is up)
NOT_IN_ALL = ("gateway", "cluster")

GOALS: dict[str, list[tuple[str, str, float]]] = {
    "propagation": [
        ("overhead_p50_s", "<=", 0.3),
        ("overhead_p95_s", "<=", 0.6),
        ("operator_action_s", "<=", 2.0),
    ],
    "download": [
        ("ratio_vs_best_baseline", ">=", 1.0),
        ("puller_peak_rss_MB", "<=", 200),
        ("tarball_speedup", ">=", 1.5),
        ("tarball_vs_peer_quoted", ">=", 2.0),
    ],
    "idle_poll": [("idle_poll_calls", "<=", 2), ("idle_poll_s", "<=", 0.2)],
    "master": [
        ("heartbeat_p99_ms", "<=", 50),
        ("heartbeat_errors", "<=", 0),
        ("cluster_view_p99_ms", "<=", 200),
        ("models_view_p99_ms", "<=", 200),
        ("metrics_view_p99_ms", "<=", 200),
        ("watch_errors", "<=", 0),
    ],
    "scoring": [
        ("rollover_errors", "<=", 0),
        ("rollover_p99_ratio", "<=", 2),
        ("gateway_overhead_p50_ms", "<=", 1),
        ("gateway_errors", "<=", 0),
    ],
    "footprint": [
        ("puller_rss_MB", "<=", 150),
        ("config_manager_rss_MB", "<=", 150),
        # the master is a tree (arbiter, worker, telemetry process): RSS summed over it counts
        # each page the worker shares with its arbiter twice; PSS counts it once
        ("master_pss_MB", "<=", 150),
    ],
    "gateway": [("gateway_overhead_p50_ms", "<=", 1), ("errors", "<=", 0)],
    "rollout": [
        ("false_rollbacks", "<=", 0),
        ("bad_nodes_max", "<=", 1),
        ("rollback_s", "<=", 30),
        ("failed_predicts_outside_canary", "<=", 0),
        ("signature_break_rolled_back", ">=", 1),
        ("unvalidated_served", "<=", 0),
        ("slow_rolled_back_on_latency", ">=", 1),
        ("unjudged_completions", "<=", 0),
    ],
    "jobs": [("job_vs_gateway_per_core", ">=", 1.0), ("gateway_errors", "<=", 0)],
    # one copy of the version per worker (3), plus TCP/IP headers and the nodes' polls
    "cluster": [("bucket_bytes_per_rollout_x_model", "<=", 3.3)],
    "containers": [("gateway_overhead_p50_ms", "<=", 1), ("errors", "<=", 0)],
}


def check_goals(name: str, figures: dict[str, Any]) -> list[str]:
    out = []
    for key, op, bound in GOALS.get(name, []):
        value = figures.get(key)
        if value is None:
            out.append(f"{key}: missing")
            continue
        ok = value <= bound if op == "<=" else value >= bound
        out.append(f"{key} {value:.3g} {op} {bound:g}: {'met' if ok else 'MISSED'}")
    return out


def run_one(name: str, quick: bool) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    module = importlib.import_module(BENCHMARKS[name])
    started = time.monotonic()
    figures = module.run(quick)
    figures["benchmark"] = name
    figures["quick"] = quick
    figures["seconds"] = round(time.monotonic() - started, 1)
    for line in check_goals(name, figures):
        print(f"  goal: {line}")
    return figures


RESULTS = Path(__file__).resolve().parent / "results.json"
README = Path(__file__).resolve().parents[1] / "README.md"


def record(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The recorded results with these merged in: one benchmark run again replaces only its own
    figures (each keeps the date it was measured), in the order of BENCHMARKS."""
    today = dt.date.today().isoformat()
    old: dict[str, dict[str, Any]] = {}
    if RESULTS.exists():
        old = json.loads(RESULTS.read_text())
    quick = {f.get("quick") for f in results.values()}
    if any(f.get("quick") not in quick for f in old.values()):
        old = {}  # never mix --quick sizes with full ones
    here = machine()
    merged = {**old, **{n: {**f, "date": today, "machine": here} for n, f in results.items()}}
    return {n: merged[n] for n in BENCHMARKS if n in merged}


def machines(results: dict[str, dict[str, Any]]) -> str:
    """Where the recorded figures were measured: one machine, or each with its benchmarks."""
    where: dict[str, list[str]] = {}
    for name, figures in results.items():
        where.setdefault(str(figures.get("machine") or machine()), []).append(name)
    if len(where) == 1:
        return next(iter(where))
    return "; ".join(f"{m} ({', '.join(f'`{n}`' for n in names)})" for m, names in where.items())


def update_readme(results: dict[str, dict[str, Any]], quick: bool) -> None:
    results = {n: results[n] for n in BENCHMARKS if n in results}  # the table's one order
    text = README.read_text()
    dates = sorted({str(f.get("date", dt.date.today().isoformat())) for f in results.values()})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]} (see `date` per row)"
    lines = [
        f"Measured {when} on {machines(results)}"
        f"{' (--quick sizes)' if quick else ''}, with `make bench`"
        f"{'' if len(dates) == 1 else ' and `python -m bench NAME --update-readme`'}.",
        "",
        "| benchmark | figure | value | goal |",
        "|---|---|---|---|",
    ]
    for name, figures in results.items():
        if len(dates) > 1:
            lines.append(f"| {name} | `date` | {figures.get('date', '')} |  |")
        goals = {k: f"{op} {b:g}" for k, op, b in GOALS.get(name, [])}
        for key, value in sorted(figures.items()):  # one order, whichever run wrote them
            if key in ("benchmark", "quick") or not isinstance(value, int | float):
                continue
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            verdict = ""
            if key in goals:
                met = [g for g in check_goals(name, figures) if g.startswith(key + " ")]
                verdict = f"{goals[key]} ({'met' if met and met[0].endswith('met') else 'MISSED'})"
            lines.append(f"| {name} | `{key}` | {shown} | {verdict} |")
    block = "\n".join(lines)
    new = re.sub(
        r"(<!-- bench:start -->\n).*?(\n<!-- bench:end -->)",
        lambda m: m.group(1) + block + m.group(2),
        text,
        flags=re.S,
    )
    README.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=[*BENCHMARKS, "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes: under 2 minutes")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in BENCHMARKS if n not in NOT_IN_ALL] if args.name == "all" else [args.name]
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"== {name}{' --quick' if args.quick else ''} ==", flush=True)
        results[name] = run_one(name, args.quick)
        if len(names) > 1:
            emit(results[name])
    if args.update_readme:
        recorded = record(results)
        update_readme(recorded, args.quick)
        RESULTS.write_text(json.dumps(recorded, indent=1, sort_keys=True))
    emit(
        results[names[0]]
        if len(names) == 1
        else {
            f"{n}.{k}": v
            for n, f in results.items()
            for k, v in f.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
