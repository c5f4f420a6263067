"""Every benchmark runs with --quick and ends with one JSON line holding its named figures.

Run by `make bench-check` (CI runs it after the e2e suite); figures are not asserted against
goals here — timings belong in the benchmark output, not in tests — except the ones that are
counts or correctness (errors, calls).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {
    "propagation": [
        "propagation_p50_s",
        "propagation_p95_s",
        "overhead_p50_s",
        "overhead_p95_s",
        "operator_action_s",
    ],
    "download": [
        "puller_MBps",
        "sequential_MBps",
        "transfer_manager_MBps",
        "ratio_vs_best_baseline",
        "puller_peak_rss_MB",
        "tarball_speedup",
        "tarball_install_s",
        "tarball_install_zlib_s",
    ],
    "idle_poll": ["idle_poll_calls", "idle_poll_s", "fallback_poll_calls", "catalog_refresh_s"],
    "master": [
        "heartbeat_p99_ms",
        "heartbeat_server_p99_ms",
        "heartbeat_probe_p99_ms",
        "first_beat_p99_ms",
        "heartbeat_errors",
        "cluster_view_p99_ms",
        "models_view_p99_ms",
        "metrics_view_p99_ms",
        "sqlite_MB",
        "master_rss_MB",
        "compaction_s",
    ],
    "scoring": [
        "predict_p50_ms",
        "predict_p99_ms",
        "predict_rps",
        "inprocess_p50_ms",
        "rollover_errors",
        "rollover_p99_ratio",
        "gateway_overhead_p50_ms",
        "gateway_errors",
        "rest_c32_p99_ms",
        "grpc_c32_p99_ms",
        "mlflow_c32_p99_ms",
    ],
    "rollout": [
        "false_rollbacks",
        "rollout_complete_s",
        "rollout_minimum_s",
        "bad_nodes_max",
        "rollback_s",
        "failed_predicts_outside_canary",
        "signature_break_rolled_back",
        "unvalidated_served",
        "slow_rolled_back_on_latency",
        "unjudged_completions",
    ],
    "footprint": [
        "puller_rss_MB",
        "config_manager_rss_MB",
        "master_rss_MB",
        "master_pss_MB",
        "puller_ready_s",
        "config_manager_ready_s",
        "master_ready_s",
    ],
    "jobs": [
        "job_1w_rows_per_s",
        "job_2w_rows_per_s",
        "gateway_c8_rows_per_s",
        "job_vs_gateway_per_core",
        "first_result_p50_ms",
        "worker_peak_rss_MB",
        "broker_overhead_ms_per_chunk",
        "broker_publish_ms",
        "gateway_errors",
    ],
    "cluster": [
        "publish_to_all_p50_s",
        "publish_to_all_p95_s",
        "bucket_bytes_per_rollout_x_model",
        "join_serving_s",
    ],
    "containers": [
        "publish_to_first_answer_s",
        "gateway_overhead_p50_ms",
        "direct_c8_rps",
        "gateway_c8_rps",
        "container_MB",
        "errors",
    ],
}
# `bench cluster` brings the multi-node Swarm up (and down) when none is up: minutes more
BOUND_S = {"cluster": 2400}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.timeout(BOUND_S.get(n, 600) + 60))  # and a margin
        for n in FIGURES
    ],
)
def test_quick_benchmark_prints_its_figures(name: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bench", name, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BOUND_S.get(name, 600),
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    last = res.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    missing = [k for k in FIGURES[name] if k not in figures]
    assert not missing, (missing, last)
    assert figures["quick"] is True
    if name == "idle_poll":
        assert figures["idle_poll_calls"] == 2
    if name == "scoring":
        assert figures["rollover_errors"] == 0
        assert figures["gateway_errors"] == 0
    if name == "master":
        assert figures["heartbeat_errors"] == 0 and figures["heartbeat_probe_errors"] == 0
    if name == "containers":
        assert figures["errors"] == 0
    if name == "jobs":  # every row scored (the benchmark asserts it) and the baseline clean
        assert figures["gateway_errors"] == 0
    if name == "rollout":  # counts, not timings: what the gate and the rollback guarantee
        assert figures["unvalidated_served"] == 0
        assert figures["failed_predicts_outside_canary"] == 0
        assert figures["bad_nodes_max"] <= 1
        assert figures["unjudged_completions"] == 0  # no silent pass
        assert figures["signature_break_rolled_back"] is True
    if name == "cluster":  # one copy of each version per worker, not one per request
        assert figures["bucket_bytes_per_rollout_x_model"] < figures["workers"] + 1
