"""Jobs with RabbitMQ as the broker (the tested alternative to Redis; no result backend): a node
of our own (its own Erlang port mapper, ports, data and cookie), the master and two workers; a
job of several chunks completes with every row once, in order."""

from __future__ import annotations

import os
from typing import Any

import pytest
from jobs_kit import jobs_cluster

from modelsync.dev.brokers import RabbitMQServer
from modelsync.dev.emulator import GCSEmulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_job_through_rabbitmq(
    gcs: GCSEmulator, model_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("jobs-rabbitmq")
    with (
        RabbitMQServer(work) as rabbit,
        jobs_cluster(
            work,
            gcs,
            model_factory,
            f"jobs-rabbitmq-{os.getpid()}",
            rabbit.url,
            master_env={"MODELSYNC_JOB_CHUNK_ROWS": "40"},
            workers=2,
        ) as cluster,
    ):
        rows = [{"x": float(i)} for i in range(400)]
        rows[123] = {"x": None}
        job = cluster.submit_rows(rows)
        done = cluster.wait_done(job["id"])
        assert (done["chunks"], done["progress"]["errors"]) == (10, 1)
        lines = cluster.result_lines(job["id"])
        assert [line["row"] for line in lines] == list(range(400))
        assert lines[5] == {"row": 5, "version": 1, "outputs": {"y": 11.0}}
        assert "error" in lines[123]
        per_worker = [w.log_path.read_text().count('"chunk_scored"') for w in cluster.node.workers]
        assert sum(per_worker) == 10 and all(per_worker), per_worker  # both took chunks
