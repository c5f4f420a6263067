"""The gateway routes container models to their servers: the serving contract's test server
runs as real processes (one per version), the gateway's HTTP server in-process on a free port,
its routes as the master's heartbeat answer gives them. MLflow's route (JSON and CSV), ML-Kraken's
body, versions, errors in a TF model's shape, auth, telemetry per version, history, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from containers_kit import start_contract_server
from gateway_kit import Http
from helpers import wait_for

from gateway.app import Gateway
from gateway.httpd import GatewayHTTPServer
from gateway.server import build
from gateway.settings import GatewaySettings
from modelsync.dev.emulator import free_port
from modelsync.dev.procs import ManagedProcess
from modelsync.settings import Env

pytestmark = pytest.mark.integration
TOKEN = "gateway-token-0123456789"


@dataclass
class Setup:
    gateway: Gateway
    server: GatewayHTTPServer
    http: Http
    ports: dict[int, int]  # version -> the contract server's port
    procs: list[ManagedProcess]


def routes(ports: dict[int, int], latest: int) -> dict[str, object]:
    """What the master answers a gateway's heartbeat with (``node_routes``)."""
    return {
        "containers": {
            "churn": {
                "versions": {str(v): p for v, p in ports.items()},
                "latest": latest,
                "labels": {"stable": 1},
            }
        }
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("gw-containers")
    procs, ports = [], {}
    for version in (1, 2):
        proc, port = start_contract_server(work, f"churn-v{version}", str(version))
        procs.append(proc)
        ports[version] = port
    settings = GatewaySettings.from_env(
        Env(
            {
                "MODELSYNC_HTTP_HOST": "127.0.0.1",
                "MODELSYNC_HTTP_PORT": "0",
                "MODELSYNC_GATEWAY_TOKEN": TOKEN,
                # no TF Serving here: a TF model's answers would be 503s
                "MODELSYNC_TFSERVING": f"127.0.0.1:{free_port()}",
                "MODELSYNC_TFSERVING_REST": f"127.0.0.1:{free_port()}",
                "MODELSYNC_GATEWAY_TIMEOUT_S": "10",
            }
        )
    )
    gateway, server = build(settings)
    server.start()
    gateway.containers.update(routes(ports, latest=2))
    wait_for(lambda: all(gateway.containers.ready("churn", v) for v in ports), 30, "pinged")
    yield Setup(gateway, server, Http(server.port, TOKEN), ports, procs)
    server.stop()
    gateway.containers.close()
    gateway.tfs.close()
    assert [p.stop() for p in procs] == [-15, -15]  # killed by SIGTERM, never crashed before


def test_mlflow_route_json_and_csv_by_version(setup: Setup) -> None:
    body = {"instances": [[1, 2], [3, 4]]}
    latest = setup.http.post("/model/churn/invocations", body)
    assert latest.status == 200 and latest.doc == {"predictions": [6.0, 14.0]}  # v2: sum x 2
    assert latest.version == 2
    first = setup.http.post("/model/churn/1/invocations", body)
    assert first.status == 200 and first.doc == {"predictions": [3.0, 7.0]} and first.version == 1
    csv = setup.http.post(
        "/model/churn/1/invocations", raw=b"1,2\n3,4\n", headers={"Content-Type": "text/csv"}
    )
    assert csv.status == 200 and csv.doc == {"predictions": [3.0, 7.0]}
    split = setup.http.post(
        "/model/churn/invocations", {"dataframe_split": {"columns": ["a"], "data": [[5]]}}
    )
    assert split.doc == {"predictions": [10.0]}


def test_the_openapi_document_has_each_container_models_operations(setup: Setup) -> None:
    doc = setup.http.get("/openapi.json").doc
    paths = doc["paths"]
    for path in (
        "/model/churn/invocations",
        "/model/churn/1/invocations",
        "/model/churn/2/invocations",
    ):
        op = paths[path]["post"]
        assert set(op["requestBody"]["content"]) == {"application/json", "text/csv"}
        assert op["summary"].startswith("Container model churn")
        assert "503" in op["responses"] and op["security"] == [{"bearerAuth": []}]
    assert "/model/churn/3/invocations" not in paths
    assert "of 1, 2" in paths["/model/churn/invocations"]["post"]["summary"]


def test_kraken_body_and_answer(setup: Setup) -> None:
    answer = setup.http.post(
        "/api/v1/run-model",
        {"modelData": [[1, 1]], "metaData": {"modelId": "churn", "modelVersion": 1}},
    )
    assert answer.status == 200, answer.raw
    assert answer.doc["results"] == [2.0]
    meta = answer.doc["metaData"]
    assert (meta["modelId"], meta["modelVersion"]) == ("churn", 1) and meta["latencyMs"] > 0
    latest = setup.http.post("/predict", {"modelData": [[1, 1]], "metaData": {"modelId": "churn"}})
    assert latest.doc["results"] == [4.0] and latest.doc["metaData"]["modelVersion"] == 2


def test_errors_have_the_shape_of_a_tf_models(setup: Setup) -> None:
    bad = setup.http.post("/model/churn/invocations", {"instances": [["x"]]})
    assert bad.status == 400
    assert bad.doc == {
        "error_code": "BAD_REQUEST",
        "message": "row ['x']: every value must be a number",
    }
    assert bad.version is None
    kraken = setup.http.post(
        "/predict", {"modelData": [["x"]], "metaData": {"modelId": "churn", "modelVersion": 2}}
    )
    assert kraken.status == 400 and kraken.doc == {
        "error": "row ['x']: every value must be a number",
        "metaData": {"modelId": "churn", "modelVersion": 2},
    }
    missing = setup.http.post("/model/churn/7/invocations", {"instances": [[1]]})
    assert missing.status == 404 and missing.doc["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "not served on this node (it serves [1, 2])" in missing.doc["message"]
    failed = setup.http.post("/model/churn/invocations", {"instances": [["boom"]]})
    assert failed.status == 502 and failed.doc["error_code"] == "INTERNAL_ERROR"
    assert "failed (HTTP 500): the model failed: RuntimeError: boom" in failed.doc["message"]
    xml = setup.http.post(
        "/model/churn/invocations", raw=b"<a/>", headers={"Content-Type": "application/xml"}
    )
    assert xml.status == 415 and "application/json or text/csv" in xml.doc["message"]
    get = setup.http.get("/model/churn/invocations")
    assert get.status == 405


def test_auth_guards_container_models_too(setup: Setup) -> None:
    anonymous = Http(setup.server.port)
    answer = anonymous.post("/model/churn/invocations", {"instances": [[1]]})
    assert answer.status == 401 and answer.doc["error_code"] == "UNAUTHENTICATED"


def test_telemetry_history_and_metrics_per_version(setup: Setup) -> None:
    setup.gateway.telemetry.take()  # what earlier tests left
    setup.gateway.telemetry.settle(True)
    for _ in range(3):
        assert setup.http.post("/model/churn/1/invocations", {"instances": [[1]]}).status == 200
    assert setup.http.post("/model/churn/2/invocations", {"instances": [["x"]]}).status == 400
    doc = setup.gateway.telemetry.take()
    setup.gateway.telemetry.settle(True)
    assert doc is not None
    by_version = doc["models"]["churn"]["by_version"]
    assert by_version["1"]["requests"] == 3 and by_version["1"]["errors"] == {}
    # the refused request counts against the version it was sent to, as the client's error
    assert by_version["2"]["requests"] == 1
    assert by_version["2"]["errors"] == {"INVALID_ARGUMENT": 1}
    history = setup.http.get("/v1/history?model=churn&limit=4").doc["entries"]
    assert [(e["version"], e["status"]) for e in history][:4] == [
        (None, 400),
        (1, 200),
        (1, 200),
        (1, 200),
    ]
    metrics = setup.http.get("/metrics").raw.decode()
    assert 'convention="mlflow",model="churn",status="200"' in metrics


def test_a_version_that_is_not_ready_gets_no_traffic_until_it_is(
    setup: Setup, tmp_path: Path
) -> None:
    """v3 arrives in the routes before its server answers /ping: requests without a version
    stay on v2 (never a failed one); asked by name, v3 is a clear 503; once its /ping answers
    200, it takes the traffic."""
    port = free_port()
    setup.gateway.containers.update(routes({**setup.ports, 3: port}, latest=3))
    proc: ManagedProcess | None = None
    try:
        for _ in range(3):
            still = setup.http.post("/model/churn/invocations", {"instances": [[1]]})
            assert still.status == 200 and still.version == 2
        named = setup.http.post("/model/churn/3/invocations", {"instances": [[1]]})
        assert named.status == 503 and named.doc["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert "version 3 is not running on this node" in named.doc["message"]
        proc = start_contract_server(tmp_path, "churn-v3", "3", port=port)[0]
        up = wait_for(
            lambda: (lambda a: a if a.version == 3 else None)(
                setup.http.post("/model/churn/invocations", {"instances": [[1]]})
            ),
            30,
            "v3 takes the traffic",
        )
        assert up.status == 200 and up.doc == {"predictions": [3.0]}
    finally:
        if proc is not None:
            proc.stop()
        setup.gateway.containers.update(routes(setup.ports, latest=2))


def test_a_port_another_version_answered_on_is_not_taken_as_ready(setup: Setup) -> None:
    """v1's port handed to a new v3 (the master reuses freed ports): v3 is pinged afresh."""
    v1_port = setup.ports[1]
    setup.gateway.containers.update(routes({2: setup.ports[2], 3: v1_port}, latest=3))
    try:
        assert not setup.gateway.containers.ready("churn", 3)  # not before its own /ping
        wait_for(lambda: setup.gateway.containers.ready("churn", 3), 30, "v3 pinged")
    finally:
        setup.gateway.containers.update(routes(setup.ports, latest=2))


def test_a_server_that_never_turns_ready_is_never_routed_to(setup: Setup, tmp_path: Path) -> None:
    proc, port = start_contract_server(tmp_path, "never", "9", never_ready=True)
    try:
        setup.gateway.containers.update(routes({**setup.ports, 9: port}, latest=9))
        for _ in range(5):
            answer = setup.http.post("/model/churn/invocations", {"instances": [[1]]})
            assert answer.status == 200 and answer.version == 2
        assert not setup.gateway.containers.ready("churn", 9)
        assert setup.gateway.containers.ready_versions() == {"churn": [1, 2]}  # for the master
        alone = {"containers": {"solo": {"versions": {"9": port}, "latest": 9}}}
        setup.gateway.containers.update(alone)
        none = setup.http.post("/model/solo/invocations", {"instances": [[1]]})
        assert none.status == 503 and "has no version ready on this node" in none.doc["message"]
    finally:
        proc.stop()
        setup.gateway.containers.update(routes(setup.ports, latest=2))
    # an answer without routes (an older master) changes nothing
    setup.gateway.containers.update({"ok": True})
    assert setup.gateway.containers.known() == ["churn"]
