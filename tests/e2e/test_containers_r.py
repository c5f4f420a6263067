"""The R example (examples/r: lm on mtcars, served by plumber from Debian's packages) as a
container model: built on the project's base image, pushed to the project's registry, published,
run as a Swarm service and scored through the gateway in MLflow's forms (JSON rows, records,
dataframe_split, CSV) and ML-Kraken's; its 400 in the TF model's shape."""

from __future__ import annotations

import os
from collections.abc import Iterator

import helpers  # type: ignore[import-not-found]
import pytest
from e2e_helpers import sh  # type: ignore[import-not-found]

from modelsync.dev.containers import ADMIN, ContainerCluster, example_image, http

pytestmark = pytest.mark.e2e
PREFIX = f"mse2er{os.getpid()}"
# mpg = 37.227 - 3.878 wt - 0.0318 hp (R's lm on mtcars)
ROWS = [[2.62, 110], [3.215, 110]]
EXPECTED = [23.572329, 21.265028]


@pytest.fixture(scope="module")
def image() -> str:
    return example_image("r")


@pytest.fixture(scope="module")
def cluster(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerCluster]:
    yield from ContainerCluster(tmp_path_factory.mktemp("containers-r"), PREFIX).run()


@pytest.mark.timeout(900)
def test_the_r_model_answers_every_form_through_the_gateway(
    cluster: ContainerCluster, image: str
) -> None:
    assert "/mpg/1/" in cluster.publish(image, "mpg", "--memory", "512M")
    doc, headers = cluster.first_answer("mpg", ROWS, 600)
    assert headers.get("X-Model-Version") == "1"
    assert doc["predictions"] == pytest.approx(EXPECTED, abs=1e-4)
    gw = cluster.gateway_url + "/model/mpg/invocations"
    records = http("POST", gw, {"dataframe_records": [{"hp": 110, "wt": 2.62}]})
    assert records[0] == 200 and records[1]["predictions"] == pytest.approx(EXPECTED[:1], abs=1e-4)
    split = http("POST", gw, {"dataframe_split": {"columns": ["wt", "hp"], "data": ROWS}})
    assert split[1]["predictions"] == pytest.approx(EXPECTED, abs=1e-4)
    csv = http("POST", gw, raw=b"wt,hp\n2.62,110\n3.215,110\n", ctype="text/csv")
    assert csv[0] == 200 and csv[1]["predictions"] == pytest.approx(EXPECTED, abs=1e-4)
    kraken = http(
        "POST",
        cluster.gateway_url + "/api/v1/run-model",
        {"modelData": ROWS, "metaData": {"modelId": "mpg", "modelVersion": 1}},
    )
    assert kraken[0] == 200 and kraken[1]["results"] == pytest.approx(EXPECTED, abs=1e-4)
    bad = http("POST", gw, {"instances": [[1, 2, 3]]})
    assert bad[0] == 400 and bad[1]["error_code"] == "BAD_REQUEST"
    assert "each row must have 2 numbers" in bad[1]["message"]
    (service,) = cluster.api("GET", "/v1/containers")[1]["services"]
    spec = sh(
        "docker",
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.Resources}}",
        service["service"],
    ).stdout
    assert '"MemoryBytes":536870912' in spec


@pytest.mark.timeout(900)
def test_a_staged_rollout_of_the_r_model_is_judged_on_the_gateways_figures(
    cluster: ContainerCluster, image: str
) -> None:
    """With a rollout spec, a second version goes canary first (here the canary is the only
    node): AVAILABLE once the gateway's /ping check passes, baked on the gateway's per-version
    figures, then complete; the model answers with it."""
    spec = {"canary_nodes": 1, "waves": [1.0], "bake_s": 6, "warmup_s": 1, "min_requests": 20}
    status, doc = http_put(cluster, "/v1/models/mpg/rollout", spec)
    assert status == 200, doc
    assert "/mpg/2/" in cluster.publish(image, "mpg", "--env", "NOTE=second")
    seen: set[str] = set()

    def complete() -> bool:
        cluster.score("mpg", ROWS)  # traffic for the judge, through the gateway
        r = cluster.api("GET", "/v1/models/mpg/rollout")[1]
        seen.add(str(r.get("status")))
        assert r.get("status") != "rolled_back", r
        return r.get("status") == "complete" and r.get("version") == 2

    helpers.wait_for(complete, 300, "v2 rolled out", interval_s=0.1)
    assert "baking" in seen
    advanced = [e for e in cluster.events("mpg") if e["event"] == "rollout_advanced"]
    assert advanced and advanced[0]["detail"]["judgement"]["source"] == "gateway", advanced[:1]
    answer = cluster.score("mpg", ROWS)
    assert answer[0] == 200 and answer[2].get("X-Model-Version") == "2"


def http_put(cluster: ContainerCluster, path: str, body: object) -> tuple[int, object]:
    status, doc, _ = http("PUT", cluster.master_url + path, body, token=ADMIN)
    return status, doc
