"""A container model end to end on a real Docker Engine: the scikit-learn example
(examples/sklearn) built on the project's base image and pushed to the project's registry
(Debian's docker-registry, scripts/registry.sh), published with ``modelsync publish --image``,
run by the master as a Swarm service on the one-node Swarm, scored through the gateway (MLflow
JSON and CSV, ML-Kraken), stopped and started through the API, replaced by a new version, a
broken version never answering and rolled back, a crash restarted and reported.

The master and the gateway run as processes of this checkout on the host (the master with the
engine's socket, as on a manager: modelsync.dev.containers); the model runs in Swarm, pulled
from the registry by digest.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import helpers  # type: ignore[import-not-found]
import pytest
from e2e_helpers import sh, wait_for  # type: ignore[import-not-found]

from modelsync.dev.containers import ContainerCluster, example_image, http

pytestmark = pytest.mark.e2e
PREFIX = f"mse2e{os.getpid()}"  # the services' name prefix: only this test's are touched
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def image() -> str:
    return example_image()


@pytest.fixture(scope="module")
def cluster(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerCluster]:
    yield from ContainerCluster(tmp_path_factory.mktemp("containers-e2e"), PREFIX, ready_s=30).run()


def inspect(name: str) -> dict[str, Any]:
    return json.loads(sh("docker", "service", "inspect", name).stdout)[0]


def has_event(cluster: ContainerCluster, event: str, version: int) -> bool:
    return any(
        e["event"] == event and e["detail"].get("version") == version
        for e in cluster.events("iris")
    )


@pytest.mark.timeout(1200)
def test_publish_run_score_stop_start_replace_roll_back_and_crash(
    cluster: ContainerCluster, image: str
) -> None:
    # another master's container service on the same Swarm: never this master's to touch
    foreign = f"{PREFIX}-foreign"
    sh(
        *("docker", "service", "create", "--detach", "--name", foreign, "--replicas", "0"),
        *("--label", "com.modelsync.role=container", "--label", "com.modelsync.owner=another"),
        image,
    )
    started = time.monotonic()
    assert "/iris/1/" in cluster.publish(image, "iris", "--env", "MODEL_NOTE=first")
    doc, headers = cluster.first_answer("iris", ROWS, 600)
    print(json.dumps({"publish_to_first_answer_s": round(time.monotonic() - started, 1)}))
    assert doc["predictions"] == ["setosa", "virginica"]
    assert headers.get("X-Model-Version") == "1"
    # the Swarm service: pinned to the digest, on serving nodes, one task a node, /ping checked
    name = f"{PREFIX}-iris-v1"
    assert cluster.services() == [foreign, name]
    spec = inspect(name)["Spec"]
    task = spec["TaskTemplate"]
    assert "@sha256:" in task["ContainerSpec"]["Image"]
    assert task["Placement"]["Constraints"] == ["node.labels.modelsync.serving == true"]
    assert task["Placement"]["MaxReplicas"] == 1
    assert "/ping" in " ".join(task["ContainerSpec"]["Healthcheck"]["Test"])
    assert "MODEL_NOTE=first" in task["ContainerSpec"]["Env"]
    assert spec["Labels"]["com.modelsync.model"] == "iris"
    # CSV, ML-Kraken, a bad request
    gw = cluster.gateway_url
    csv = http("POST", gw + "/model/iris/1/invocations", raw=b"5.9,3.0,4.2,1.5\n", ctype="text/csv")
    assert csv[0] == 200 and csv[1]["predictions"] == ["versicolor"]
    kraken = http("POST", gw + "/predict", {"modelData": ROWS, "metaData": {"modelId": "iris"}})
    assert kraken[0] == 200 and kraken[1]["results"] == ["setosa", "virginica"]
    bad = cluster.score("iris", [[1, 2]])
    assert bad[0] == 400 and bad[1]["error_code"] == "BAD_REQUEST"
    assert "each row must have 4 numbers" in bad[1]["message"]
    # the master's view
    status, view = cluster.api("GET", "/v1/models/iris")
    assert status == 200 and view["kind"] == "container"
    running = cluster.api("GET", "/v1/containers")[1]
    assert [(s["service"], s["replicas"]) for s in running["services"]] == [(name, 1)]
    # stop: scaled to 0, the gateway stops routing; start: it answers again
    assert cluster.api("POST", "/v1/models/iris/stop", admin=True)[0] == 200
    wait_for(
        lambda: inspect(name)["Spec"]["Mode"]["Replicated"]["Replicas"] == 0, 60, "scaled to 0"
    )
    wait_for(lambda: cluster.score("iris", ROWS)[0] in (404, 503), 60, "routing stopped")
    assert cluster.api("POST", "/v1/models/iris/start", admin=True)[0] == 200
    wait_for(lambda: cluster.score("iris", ROWS)[0] == 200, 300, "iris answers again")
    # a new version (keep_versions 1): v2 runs, v1's service goes once v2 is ready
    assert "/iris/2/" in cluster.publish(image, "iris", "--env", "MODEL_NOTE=second")
    wait_for(
        lambda: cluster.score("iris", ROWS)[2].get("X-Model-Version") == "2", 600, "v2 answers"
    )
    v2 = f"{PREFIX}-iris-v2"
    wait_for(lambda: cluster.services() == [foreign, v2], 120, "v1's service removed")

    def v2_ready() -> bool:  # Swarm's own healthcheck passed (not only the gateway's /ping)
        doc = cluster.api("GET", "/v1/containers")[1]
        return [(s["version"], s["running"]) for s in doc["services"]] == [(2, 1)]

    wait_for(v2_ready, 120, "v2's task healthy in Swarm")
    # a broken version (its server is not on the port its descriptor names: /ping never
    # answers): never routed to — v2 answers every request meanwhile — and rolled back
    assert "/iris/3/" in cluster.publish(image, "iris", "--port", "9999")
    answered: list[str | None] = []

    def rolled_back() -> bool:
        status, _doc, headers = cluster.score("iris", ROWS)
        answered.append(headers.get("X-Model-Version") if status == 200 else f"HTTP {status}")
        return has_event(cluster, "container_version_rolled_back", 3)

    helpers.wait_for(rolled_back, 300, "version 3 rolled back", interval_s=0.5)
    assert len(answered) > 10 and set(answered) == {"2"}, answered
    wait_for(lambda: cluster.services() == [foreign, v2], 120, "v3's service removed")
    assert cluster.api("GET", "/v1/models/iris")[1]["target_versions"] == [2]
    # a crash: Swarm starts another task, the master reports it, the model answers again
    (container,) = sh(
        "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={v2}"
    ).stdout.split()
    sh("docker", "kill", container)
    wait_for(lambda: has_event(cluster, "container_task_failed", 2), 120, "the crash reported")
    wait_for(lambda: cluster.score("iris", ROWS)[0] == 200, 120, "iris answers after the crash")
    sh("docker", "service", "rm", foreign)
