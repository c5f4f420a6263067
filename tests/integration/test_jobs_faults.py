"""Jobs under faults, on real processes (127.0.0.1): a worker SIGKILLed in the middle of a chunk,
Redis restarted in the middle of a job, the node's TF Serving restarted in the middle of a job.
Each time the job completes with every row exactly once, in order, with the right answer.

Chunks here are slow on purpose (one Predict per row), so that a fault lands inside one."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import wait_for
from jobs_kit import JobsCluster, jobs_cluster

from modelsync.dev.brokers import RedisServer
from modelsync.dev.emulator import GCSEmulator
from modelsync.dev.procs import ManagedProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROWS = 1200  # 12 chunks of 100 rows, one Predict per row


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    gcs: GCSEmulator,
    model_factory: Any,
    redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[JobsCluster]:
    with jobs_cluster(
        tmp_path_factory.mktemp("jobs-faults"),
        gcs,
        model_factory,
        f"jobs-faults-{os.getpid()}",
        redis.url,
        master_env={"MODELSYNC_JOB_CHUNK_ROWS": "100"},
        worker_env={"MODELSYNC_WORKER_BATCH_ROWS": "1", "MODELSYNC_WORKER_CONCURRENCY": "1"},
    ) as c:
        yield c


def events(proc: ManagedProcess) -> list[dict[str, Any]]:
    out = []
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def in_chunk(proc: ManagedProcess, job: str) -> int | None:
    """The chunk of ``job`` the worker started and has not finished yet, per its log."""
    started: dict[int, bool] = {}
    for e in events(proc):
        if e.get("job") != job:
            continue
        if e["event"] == "chunk_started":
            started[e["chunk"]] = True
        elif e["event"] in ("chunk_scored", "chunk_duplicate"):
            started.pop(e["chunk"], None)
    return next(iter(started), None)


def every_row_once(cluster: JobsCluster, job_id: str) -> None:
    done = cluster.wait_done(job_id, timeout_s=240)
    assert done["progress"]["rows_done"] == ROWS and done["progress"]["errors"] == 0
    lines = cluster.result_lines(job_id)
    assert [line["row"] for line in lines] == list(range(ROWS))  # each once, in order
    assert all(line["outputs"]["y"] == 2 * line["row"] + 1 for line in lines)


def submit(cluster: JobsCluster) -> str:
    return str(cluster.submit_rows([{"x": float(i)} for i in range(ROWS)])["id"])


def test_a_worker_killed_mid_chunk_the_job_completes_every_row_once(cluster: JobsCluster) -> None:
    (victim,) = [w for w in cluster.node.workers if w.alive()]
    job = submit(cluster)
    chunk = wait_for(
        lambda: in_chunk(victim, job), 60, "the worker inside a chunk", interval_s=0.01
    )
    os.killpg(victim.pid, signal.SIGKILL)
    victim.proc.wait(timeout=10)  # type: ignore[union-attr]
    assert in_chunk(victim, job) == chunk  # it died inside that chunk, its message unacknowledged
    fresh = cluster.node.start_worker(cluster.broker_url, extra_env=cluster.worker_env)
    every_row_once(cluster, job)
    scored = {
        e["chunk"] for e in events(fresh) if e.get("job") == job and e["event"] == "chunk_scored"
    }
    assert chunk in scored  # redelivered (after the visibility timeout) and scored by the new one


def test_the_broker_restarted_mid_job_the_job_completes(
    cluster: JobsCluster, redis: RedisServer
) -> None:
    (worker,) = [w for w in cluster.node.workers if w.alive()]
    job = submit(cluster)
    wait_for(lambda: cluster.job(job)["progress"]["chunks_done"] >= 1, 60, "a first chunk")
    redis.stop()  # SIGTERM: what is queued and unacknowledged is in the append-only file
    wait_for(
        lambda: any("Connection to broker lost" in e["event"] for e in events(worker)),
        30,
        "the worker to meet the dead broker",
    )
    redis.start()
    assert cluster.job(job)["progress"]["chunks_done"] < 12
    every_row_once(cluster, job)


def test_the_nodes_tf_serving_restarted_chunks_retry_and_complete(cluster: JobsCluster) -> None:
    (worker,) = [w for w in cluster.node.workers if w.alive()]
    job = submit(cluster)
    wait_for(lambda: cluster.job(job)["progress"]["chunks_done"] >= 1, 60, "a first chunk")
    assert cluster.node.model_server is not None
    cluster.node.model_server.stop()
    wait_for(lambda: retries(worker) > 0, 30, "a chunk retried while TF Serving is down")
    cluster.node.start_model_server()  # the config manager pushes the config again
    every_row_once(cluster, job)


def retries(worker: ManagedProcess) -> float:
    url = f"http://127.0.0.1:{worker.port}/metrics"  # type: ignore[attr-defined]
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("modelsync_worker_retries_total"):
                return float(line.split()[-1])
    return 0.0
