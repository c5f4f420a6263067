"""The gateway as a process in front of the compatible model server (real SavedModels): MLflow
and ML-Kraken answers equal direct gRPC Predict, rollovers lose no request, TF Serving REST
passes through byte for byte, auth, the documented 4xx, history, metrics and schemathesis."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gateway_kit import Http, direct, publish_version, scored, start_gateway
from helpers import wait_for

from modelsync.client import PredictClient
from modelsync.dev.emulator import free_port
from modelsync.dev.procs import ManagedProcess, start_model_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "gateway-token-0123456789"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from modelsync.dev.models import make_linear_model, make_two_input_model

    root = tmp_path_factory.mktemp("gw-src")
    return {
        "v1": make_two_input_model(root / "v1", 2.0, 3.0),
        "v2": make_two_input_model(root / "v2", 5.0, 7.0),
        "linear": make_linear_model(root / "linear", 4.0, 1.0),
    }


@dataclass
class Env:
    root: Path
    server: ManagedProcess
    grpc: str
    rest_port: int
    gateway: ManagedProcess
    port: int
    secured: ManagedProcess
    secured_port: int


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("gw")
    root = work / "models"
    for name in ("two", "roll"):
        (root / name).mkdir(parents=True)
        publish_version(models["v1"], root / name, 1)
    cfg = work / "models.config"
    cfg.write_text(
        "model_config_list { "
        + " ".join(
            f'config {{ name: "{n}" base_path: "{root / n}" model_platform: "tensorflow" }}'
            for n in ("two", "roll")
        )
        + " }"
    )
    server = start_model_server(
        work, model_config_file=str(cfg), flags=["--file_system_poll_wait_seconds=1"]
    )
    grpc_target = f"127.0.0.1:{server.grpc_port}"  # type: ignore[attr-defined]
    rest_port = server.rest_port  # type: ignore[attr-defined]
    base = {
        "MODELSYNC_TFSERVING": grpc_target,
        "MODELSYNC_TFSERVING_REST": f"127.0.0.1:{rest_port}",
        "MODELSYNC_HTTP_HOST": "127.0.0.1",
        "MODELSYNC_GATEWAY_MAX_BODY_BYTES": "65536",
        # a stale "latest" must not matter: a rollover is followed from its first answer
        "MODELSYNC_GATEWAY_LATEST_TTL_S": "3600",
    }
    token_file = work / "token"
    token_file.write_text(TOKEN + "\n")
    gateway, port = start_gateway(work, "gateway", base)
    secured, secured_port = start_gateway(
        work,
        "gateway-secured",
        {
            **base,
            "MODELSYNC_GATEWAY_TOKEN_FILE": str(token_file),
            "MODELSYNC_GATEWAY_CAPTURE": "true",
            "MODELSYNC_GATEWAY_CAPTURE_BYTES": "40",
        },
    )
    yield Env(root, server, grpc_target, rest_port, gateway, port, secured, secured_port)
    codes = {p.name: p.stop() for p in (secured, gateway, server)}
    assert codes == {"gateway-secured": 0, "gateway": 0, "model-server": 0}, (
        gateway.log_tail() + secured.log_tail()
    )


# --- conventions ----------------------------------------------------------------------------


def test_every_format_answers_what_grpc_predict_answers(env: Env) -> None:
    x, n = [1.5, -2.0, 0.25], [3, 4, -5]
    version, want = direct(env.grpc, "two", x, n)
    assert version == 1 and want == pytest.approx(
        [2 * a + 3 * b for a, b in zip(x, n, strict=True)]
    )
    records = [{"x": a, "n": b} for a, b in zip(x, n, strict=True)]
    gw = Http(env.port)
    bodies = [
        {
            "dataframe_split": {
                "columns": ["x", "n"],
                "data": [[a, b] for a, b in zip(x, n, strict=True)],
            }
        },
        {
            "dataframe_split": {
                "index": [7, 8, 9],
                "columns": ["n", "x"],
                "data": [[b, a] for a, b in zip(x, n, strict=True)],
            }
        },
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": {"x": x, "n": n}, "params": {"temperature": 1}},
    ]
    for path in ("/model/two/invocations", "/model/two/1/invocations"):
        for body in bodies:
            got = gw.post(path, body)
            assert (got.status, got.version, got.doc) == (200, 1, {"predictions": want}), body
    for path in ("/predict", "/api/v1/run-model"):
        for data in ({"x": x, "n": n}, records):
            got = gw.post(path, {"modelData": data, "metaData": {"modelId": "two"}})
            assert got.status == 200 and got.version == 1
            assert got.doc["results"] == want
            assert got.doc["metaData"]["modelId"] == "two"
            assert got.doc["metaData"]["modelVersion"] == 1
            assert got.doc["metaData"]["latencyMs"] > 0
    got = gw.post(
        "/predict", {"modelData": records, "metaData": {"modelId": "two", "modelVersion": 1}}
    )
    assert got.doc["results"] == want
    # several outputs (the "pair" signature): per-row objects for DataFrames, as MLflow answers
    rows = gw.post("/model/two/invocations?signature_name=pair", {"dataframe_records": records})
    assert rows.doc == {
        "predictions": [{"y": y, "n2": 2 * b} for y, b in zip(want, n, strict=True)]
    }
    cols = gw.post("/model/two/invocations?signature_name=pair", {"inputs": {"x": x, "n": n}})
    assert cols.doc == {"predictions": {"y": want, "n2": [2 * b for b in n]}}


def test_tfserving_rest_passes_through_byte_for_byte(env: Env) -> None:
    gw, tfs = Http(env.port), Http(env.rest_port)
    cases = [
        ("GET", "/v1/models/two", None),
        ("GET", "/v1/models/two/metadata", None),
        ("GET", "/v1/models/two/versions/1", None),
        ("GET", "/v1/models/two/versions/1/metadata", None),
        ("POST", "/v1/models/two:predict", {"instances": [{"x": 1.0, "n": 2}]}),
        ("POST", "/v1/models/two/versions/1:predict", {"inputs": {"x": [1.0], "n": [2]}}),
        ("POST", "/v1/models/two:predict", {"instances": "nope"}),
        ("POST", "/v1/models/two:classify", {"examples": [{"x": 1.0}]}),
        ("GET", "/v1/models/missing", None),
        ("POST", "/v1/models/missing:predict", {}),
        ("GET", "/v1/models/two/versions/9", None),
    ]
    statuses = set()
    for method, path, body in cases:
        want, got = tfs.call(method, path, body), gw.call(method, path, body)
        assert (got.status, got.raw) == (want.status, want.raw), (method, path)
        assert got.headers["content-type"] == want.headers["content-type"]
        statuses.add(got.status)
    assert {200, 400, 404} <= statuses
    assert gw.get("/v1/models/two/metadata").version == 1
    assert gw.get("/v1/models/two/versions/1").version == 1
    # what is no TF Serving REST path is refused by the gateway (tests/unit/gateway has them all)
    assert gw.get("/v1/models/two:bad").status == 404
    assert gw.get("/v1/models/two/../../monitoring/prometheus/metrics").status == 404


def test_bad_input_is_a_clear_4xx(env: Env) -> None:
    gw = Http(env.port)
    cases: list[tuple[str, Any, int, str, str]] = [
        ("/model/two/invocations", b"{not json", 400, "BAD_REQUEST", "not valid JSON"),
        ("/model/two/invocations", {"data": [[1, 2]]}, 400, "BAD_REQUEST", "exactly one of"),
        (
            "/model/two/invocations",
            {"dataframe_records": [{"x": 1.0}]},
            400,
            "BAD_REQUEST",
            "missing input 'n'",
        ),
        (
            "/model/two/invocations",
            {"dataframe_split": {"columns": ["x", "n", "z"], "data": [[1, 2, 3]]}},
            400,
            "BAD_REQUEST",
            "unknown input 'z'",
        ),
        (
            "/model/two/invocations",
            {"inputs": {"x": ["abc"], "n": [1]}},
            400,
            "BAD_REQUEST",
            "input 'x': expected float32 numbers, got a string",
        ),
        (
            "/model/two/invocations",
            {"inputs": {"x": [[1.0], [1.0, 2.0]], "n": [1, 2]}},
            400,
            "BAD_REQUEST",
            "input 'x': ragged",
        ),
        (
            "/model/two/invocations",
            {"inputs": {"x": [[1.0]], "n": [1]}},
            400,
            "BAD_REQUEST",
            "input 'x': shape [1, 1] does not fit",
        ),
        # passes the gateway's checks, TF Serving refuses it: its INVALID_ARGUMENT and message
        (
            "/model/two/invocations",
            {"inputs": {"x": [1.0, 2.0, 3.0], "n": [1, 2]}},
            400,
            "BAD_REQUEST",
            "Incompatible shapes",
        ),
        (
            "/model/two/invocations?signature_name=nope",
            {"inputs": {"x": [1.0], "n": [1]}},
            400,
            "BAD_REQUEST",
            "no signature 'nope'",
        ),
        (
            "/model/nope/invocations",
            {"inputs": [1.0]},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Servable not found",
        ),
        (
            "/model/two/9/invocations",
            {"inputs": [1.0]},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "Servable not found",
        ),
        (
            "/model/two/007/invocations",
            {"inputs": [1.0]},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "does not exist",
        ),
        (
            "/model/bad%20name/invocations",
            {"inputs": [1.0]},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "does not exist",
        ),
        (
            "/model/two/invocations",
            {"inputs": [0.5] * 20000},
            413,
            "BAD_REQUEST",
            "larger than 65536 bytes",
        ),
        ("/model/two/invocations", b"x,n\n1,2\n", 415, "BAD_REQUEST", "CSV"),
    ]
    for path, body, status, code, message in cases:
        raw = body if isinstance(body, bytes) else None
        hdrs = {"Content-Type": "text/csv"} if body == b"x,n\n1,2\n" else None
        got = gw.post(path, None if raw else body, raw=raw, headers=hdrs)
        assert got.status == status and got.doc["error_code"] == code, (path, got.raw)
        assert message in got.doc["message"], (path, got.raw)
    got = gw.get("/model/two/invocations")
    assert got.status == 405 and got.doc["error_code"] == "BAD_REQUEST"
    for body, status, message in [
        ({"metaData": {"modelId": "two"}}, 400, "'modelData' is missing"),
        ({"modelData": {"x": [1.0]}, "metaData": {"modelId": "two"}}, 400, "missing input 'n'"),
        ({"modelData": [1.0], "metaData": {"modelId": "nope"}}, 404, "Servable not found"),
        (
            {"modelData": [1.0], "metaData": {"modelId": "two", "modelVersion": 5}},
            404,
            "Servable not found",
        ),
    ]:
        got = gw.post("/predict", body)
        assert got.status == status and message in got.doc["error"], got.raw
    assert gw.get("/nothing").status == 404
    assert gw.post("/v1/models/two:predict", {"inputs": [0.5] * 20000}).status == 413


def test_tfserving_down_is_503(env: Env, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    proc, port = start_gateway(
        tmp_path, "gateway-dead", {"MODELSYNC_TFSERVING": dead, "MODELSYNC_TFSERVING_REST": dead}
    )
    try:
        gw = Http(port)
        got = gw.post("/model/two/invocations", {"inputs": {"x": [1.0], "n": [1]}})
        assert got.status == 503 and got.doc["error_code"] == "TEMPORARILY_UNAVAILABLE"
        got = gw.post("/predict", {"modelData": [1.0], "metaData": {"modelId": "two"}})
        assert got.status == 503 and "unavailable" in got.doc["error"]
        assert gw.get("/v1/models/two").status == 503
        assert gw.get("/readyz").status == 503 and gw.get("/healthz").status == 200
    finally:
        assert proc.stop() == 0, proc.log_tail()
    assert Http(env.port).get("/readyz").doc["ready"] is True


def test_token_guards_every_route_but_health_and_metrics(env: Env) -> None:
    anon, wrong, good = (
        Http(env.secured_port),
        Http(env.secured_port, "x" * 24),
        Http(env.secured_port, TOKEN),
    )
    body = {"inputs": {"x": [1.0, 1.0], "n": [1, 1]}}
    for client in (anon, wrong):
        got = client.post("/model/two/invocations", body)
        assert got.status == 401 and got.doc["error_code"] == "UNAUTHENTICATED"
        assert got.headers["www-authenticate"].startswith("Bearer")
        for method, path in (
            ("POST", "/predict"),
            ("GET", "/v1/models/two"),
            ("GET", "/v1/history"),
            ("GET", "/openapi.json"),
            ("GET", "/nothing"),
        ):
            assert client.call(method, path, {} if method == "POST" else None).status == 401
        for path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(path).status == 200
    got = good.post("/model/two/invocations", body)
    assert (got.status, got.doc) == (200, {"predictions": [5.0, 5.0]})
    # the secured gateway captures bodies, cut at 40 bytes
    entry = good.get("/v1/history?model=two&limit=1").doc["entries"][0]
    sent = json.dumps(body)
    assert entry["request"] == sent[:40] + f"...[truncated {len(sent) - 40} of {len(sent)} bytes]"
    assert entry["response"] == '{"predictions":[5.0,5.0]}'
    assert good.get("/v1/models/two").status == 200


def test_history_and_metrics_show_the_requests(env: Env) -> None:
    gw = Http(env.port)
    assert gw.post("/model/two/1/invocations", {"inputs": {"x": [1.0], "n": [1]}}).status == 200
    assert (
        gw.post(
            "/predict", {"modelData": {"x": ["a"], "n": [1]}, "metaData": {"modelId": "two"}}
        ).status
        == 400
    )
    assert gw.get("/v1/models/two/versions/1").status == 200
    entries = gw.get("/v1/history?model=two&limit=3").doc["entries"]
    assert [(e["convention"], e["status"], e["version"]) for e in entries] == [
        ("tfserving-rest", 200, 1),
        ("kraken", 400, None),
        ("mlflow", 200, 1),
    ]
    assert "input 'x'" in entries[1]["error"] and entries[0]["latency_ms"] > 0
    assert "request" not in entries[0]  # capture is off by default
    assert gw.get("/v1/history?limit=0").status == 400
    text = gw.get("/metrics").raw.decode()
    m = re.search(
        r'modelsync_gateway_requests_total\{convention="mlflow",model="two",'
        r'status="200"\} (\d+)',
        text,
    )
    assert m and int(m.group(1)) >= 1, text[:2000]
    assert 'modelsync_gateway_request_seconds_bucket{convention="kraken"' in text


# --- rollovers ------------------------------------------------------------------------------


def test_unversioned_route_follows_rollovers_without_a_failed_request(
    env: Env, models: dict[str, Path]
) -> None:
    answers: list[tuple[int, int | None, Any]] = []
    stop = threading.Event()
    body = {"inputs": {"x": [1.0, 2.0], "n": [1, 2]}}

    def load() -> None:
        gw = Http(env.port)
        deadline = time.monotonic() + 180
        for _ in range(200_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                got = gw.post("/model/roll/invocations", body)
                answers.append((got.status, got.version, got.doc))
            except Exception as exc:  # a failed request, counted below
                answers.append((0, None, repr(exc)))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(answers) >= 20, 60, "first answers")
        publish_version(models["v2"], env.root / "roll", 2)
        wait_for(lambda: any(v == 2 for _s, v, _d in answers), 120, "answers from v2")
        seen = len(answers)
        wait_for(lambda: len(answers) >= seen + 50, 60, "more answers from v2")
    finally:
        stop.set()
        thread.join(60)
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:5]
    versions = [v for _s, v, _d in answers]
    assert versions[0] == 1 and versions[-1] == 2
    assert versions == sorted(versions)  # one client: never back to v1 after a v2 answer
    expected = {1: [5.0, 10.0], 2: [12.0, 24.0]}
    assert all(d == {"predictions": expected[v]} for _s, v, d in answers if v is not None)

    # a rollover to a version with another signature (x only): followed from its first answer
    publish_version(models["linear"], env.root / "roll", 3)
    client = PredictClient(env.grpc)
    try:
        import grpc

        wait_for(
            lambda: client.predict("roll", {"x": [1.0]}, timeout_s=10)[0] == 3,
            120,
            "v3 served as latest",
            errors=(grpc.RpcError,),
        )
    finally:
        client.close()
    gw = Http(env.port)
    got = gw.post("/model/roll/invocations", {"inputs": {"x": [1.0]}})
    assert (got.status, got.version, got.doc) == (200, 3, {"predictions": [5.0]})
    got = gw.post("/model/roll/invocations", body)
    assert got.status == 400 and "unknown input 'n'" in got.doc["message"]
    got = gw.post("/model/roll/2/invocations", body)
    assert got.status in (200, 404)  # v2 is being unloaded: either answer is right


# --- the OpenAPI document -------------------------------------------------------------------


def test_schemathesis_finds_no_server_errors(env: Env, tmp_path: Path) -> None:
    gw = Http(env.port)
    assert gw.post("/model/two/invocations", {"inputs": {"x": [1.0], "n": [1]}}).status == 200
    doc = gw.get("/openapi.json").doc
    body = doc["paths"]["/model/two/invocations"]["post"]["requestBody"]
    inputs = body["content"]["application/json"]["schema"]["oneOf"][3]["properties"]["inputs"]
    assert inputs["properties"]["n"]["items"]["type"] == "integer"
    assert inputs["required"] == ["n", "x"]
    before = scored(gw)
    exe = Path(sys.executable).parent / "schemathesis"
    res = subprocess.run(
        [
            str(exe),
            "run",
            f"http://127.0.0.1:{env.port}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--request-timeout",
            "20",
            "--generation-deterministic",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    m = re.search(r"(\d+) generated, (\d+) passed", res.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 100, res.stdout[-3000:]
    assert scored(gw) - before >= 20  # generated requests reached the model and were answered
