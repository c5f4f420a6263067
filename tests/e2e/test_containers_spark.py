"""The Spark example (examples/spark: a Spark ML PipelineModel in local mode, pyspark from PyPI,
Debian's OpenJDK) as a container model: built on the project's base image, pushed to the
project's registry, published with a memory limit, run as a Swarm service (ready only once the
JVM and the model are loaded) and scored through the gateway in JSON, records and CSV."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from modelsync.dev.containers import ContainerCluster, example_image, http

pytestmark = pytest.mark.e2e
PREFIX = f"mse2es{os.getpid()}"
ROWS = [[1.0, 2.0], [0.5, -1.0]]
EXPECTED = [3 * x1 - 2 * x2 + 1 for x1, x2 in ROWS]  # what the pipeline learned


@pytest.fixture(scope="module")
def image() -> str:
    return example_image("spark")


@pytest.fixture(scope="module")
def cluster(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerCluster]:
    yield from ContainerCluster(
        tmp_path_factory.mktemp("containers-spark"), PREFIX, ready_s=300
    ).run()


@pytest.mark.timeout(1200)
def test_the_spark_pipeline_answers_through_the_gateway(
    cluster: ContainerCluster, image: str
) -> None:
    assert "/pipeline/1/" in cluster.publish(image, "pipeline", "--memory", "1536M")
    doc, headers = cluster.first_answer("pipeline", ROWS, 900)
    assert headers.get("X-Model-Version") == "1"
    assert doc["predictions"] == pytest.approx(EXPECTED, abs=0.01)
    gw = cluster.gateway_url + "/model/pipeline/invocations"
    records = http("POST", gw, {"dataframe_records": [{"x2": 2.0, "x1": 1.0}]})
    assert records[0] == 200 and records[1]["predictions"] == pytest.approx(EXPECTED[:1], abs=0.01)
    csv = http("POST", gw, raw=b"x1,x2\n1,2\n0.5,-1\n", ctype="text/csv")
    assert csv[0] == 200 and csv[1]["predictions"] == pytest.approx(EXPECTED, abs=0.01)
    bad = http("POST", gw, {"instances": [[1.0]]})
    assert bad[0] == 400 and "each row must have 2 numbers" in bad[1]["message"]
