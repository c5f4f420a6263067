"""The compatible model server, driven only through the official tensorflow-serving-api stubs
and TF Serving's REST API, with real SavedModels on disk."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from helpers import wait_for
from servers import ModelServerClient as Client
from servers import config_text
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from modelsync.dev.procs import start_model_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATE = get_model_status_pb2.ModelVersionStatus.State


@pytest.fixture
def server_env(tmp_path: Path, model_factory):  # type: ignore[no-untyped-def]
    """A model root with demo v1 (y = 2x + 1) and a running server configured for it."""
    root = tmp_path / "models"
    shutil.copytree(model_factory(2.0), root / "demo" / "1")
    cfg = tmp_path / "models.config"
    cfg.write_text(config_text({"demo": {"base_path": str(root / "demo")}}))
    proc = start_model_server(
        tmp_path,
        model_config_file=str(cfg),
        flags=["--file_system_poll_wait_seconds=1", "--max_num_load_retries=0"],
    )
    client = Client(proc.grpc_port, proc.rest_port)  # type: ignore[attr-defined]
    yield root, client, proc
    client.channel.close()
    assert proc.stop() == 0, proc.log_tail()


def test_predict_and_version_lifecycle(server_env, model_factory) -> None:  # type: ignore[no-untyped-def]
    root, client, _proc = server_env
    version, out = client.predict("demo", [1.0, 2.0, 3.0])
    assert version == 1
    np.testing.assert_allclose(out["y"], [3.0, 5.0, 7.0])
    assert client.status("demo") == {1: (STATE.AVAILABLE, 0, "")}

    # add v2 (a larger model, so loading takes long enough to be seen) and serve both
    shutil.copytree(model_factory(3.0, pad_bytes=48 * 2**20), root / "demo" / "2")
    code, msg = client.reload(
        config_text({"demo": {"base_path": str(root / "demo"), "versions": [1, 2]}})
    )
    assert code == 0, msg
    seen: list[int] = []

    def v2_available() -> bool:
        st = client.status("demo").get(2)
        if st and (not seen or seen[-1] != st[0]):
            seen.append(st[0])
        return bool(st and st[0] == STATE.AVAILABLE)

    wait_for(v2_available, interval_s=0.005)
    assert seen[-1] == STATE.AVAILABLE
    order = [STATE.START, STATE.LOADING, STATE.AVAILABLE]
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)
    assert STATE.LOADING in seen or STATE.START in seen, seen
    version, out = client.predict("demo", [1.0], version=2)
    assert version == 2 and out["y"].tolist() == [4.0]
    assert client.predict("demo", [1.0])[0] == 2  # latest

    # output_filter and a named signature
    _, out = client.predict("demo", [1.0], version=1, signature="double", output_filter=("y2",))
    assert list(out) == ["y2"] and out["y2"].tolist() == [6.0]

    # a label onto a version that is not loaded is refused, and labels stay as they were
    code, msg = client.reload(
        config_text(
            {"demo": {"base_path": str(root / "demo"), "versions": [1, 2], "labels": {"stable": 3}}}
        )
    )
    assert code == 9 and "not currently available" in msg  # FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as info:
        client.predict("demo", [1.0], label="stable")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a label onto an AVAILABLE version works
    code, msg = client.reload(
        config_text(
            {"demo": {"base_path": str(root / "demo"), "versions": [1, 2], "labels": {"stable": 1}}}
        )
    )
    assert code == 0, msg
    version, out = client.predict("demo", [1.0], label="stable")
    assert version == 1 and out["y"].tolist() == [3.0]

    # errors with TF Serving's status codes
    for kwargs, status in [
        (dict(model="nope"), grpc.StatusCode.NOT_FOUND),
        (dict(model="demo", version=9), grpc.StatusCode.NOT_FOUND),
        (dict(model="demo", signature="nope"), grpc.StatusCode.FAILED_PRECONDITION),
        (dict(model="demo", output_filter=("zz",)), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            client.predict(xs=[1.0], **kwargs)
        assert info.value.code() == status, (kwargs, info.value)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "demo"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], dtype=np.float64)))
    with pytest.raises(grpc.RpcError) as info:
        client.predict_stub.Predict(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expects arg[0] to be float but double is provided" in info.value.details()

    # drop the model: its versions reach END and it answers NOT_FOUND
    code, msg = client.reload("model_config_list {}")
    assert code == 0, msg
    wait_for(lambda: all(s[0] == STATE.END for s in client.status("demo").values()))
    with pytest.raises(grpc.RpcError) as info:
        client.predict("demo", [1.0])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_corrupt_model_fails_alone(server_env, model_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, client, _proc = server_env
    bad = root / "broken" / "1"
    shutil.copytree(model_factory(2.0), bad)
    (bad / "saved_model.pb").write_bytes(b"\x00garbage, not a SavedModel proto")
    code, msg = client.reload(
        config_text(
            {
                "demo": {"base_path": str(root / "demo")},
                "broken": {"base_path": str(root / "broken")},
            }
        )
    )
    assert code != 0 and "broken" in msg  # the new model did not become available
    state, err_code, err_msg = client.status("broken")[1]
    assert state == STATE.END and err_code != 0 and err_msg
    assert client.predict("demo", [1.0])[0] == 1  # the other model is unaffected
    with pytest.raises(grpc.RpcError) as info:  # no version loaded: TF Serving's NOT_FOUND
        client.predict("broken", [1.0])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "Servable not found for request: Latest(broken)"


def test_metadata_grpc_and_rest(server_env) -> None:  # type: ignore[no-untyped-def]
    _root, client, _proc = server_env
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "demo"
    req.metadata_field.append("signature_def")
    resp = client.predict_stub.GetModelMetadata(req, timeout=10)
    sdm = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sdm)
    assert resp.model_spec.version.value == 1
    assert set(sdm.signature_def) >= {"serving_default", "double"}
    assert list(sdm.signature_def["serving_default"].inputs) == ["x"]
    assert sdm.signature_def["serving_default"].method_name == "tensorflow/serving/predict"
    del req.metadata_field[:]
    with pytest.raises(grpc.RpcError) as info:
        client.predict_stub.GetModelMetadata(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    status, doc = client.http("GET", "/v1/models/demo/metadata")
    assert status == 200 and doc["model_spec"] == {
        "name": "demo",
        "signature_name": "",
        "version": "1",
    }
    sd = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sd["inputs"]["x"]["dtype"] == "DT_FLOAT"


def test_rest_api(server_env) -> None:  # type: ignore[no-untyped-def]
    _root, client, _proc = server_env
    assert client.http("GET", "/v1/models/demo") == (
        200,
        {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        },
    )
    assert client.http("GET", "/v1/models/demo/versions/1")[0] == 200
    assert client.http("POST", "/v1/models/demo:predict", {"instances": [1.0, 2.0]}) == (
        200,
        {"predictions": [3.0, 5.0]},
    )
    assert client.http("POST", "/v1/models/demo/versions/1:predict", {"inputs": {"x": [0.0]}}) == (
        200,
        {"outputs": [1.0]},
    )
    assert client.http(
        "POST", "/v1/models/demo:predict", {"signature_name": "double", "instances": [{"x": 1.0}]}
    ) == (200, {"predictions": [{"y": 3.0, "y2": 6.0}]})
    assert client.http(
        "POST", "/v1/models/demo:predict", {"signature_name": "double", "inputs": [1.0]}
    ) == (200, {"outputs": {"y": [3.0], "y2": [6.0]}})
    status, doc = client.http("POST", "/v1/models/demo:predict", {"instances": [["a"]]})
    assert status == 400 and "error" in doc
    status, doc = client.http("POST", "/v1/models/nope:predict", {"instances": [1.0]})
    assert status == 404 and "nope" in doc["error"]
    status, doc = client.http("POST", "/v1/models/demo:predict", {"nothing": 1})
    assert status == 400 and "instances" in doc["error"]
    for bad in ([None, None], 3):  # found by schemathesis through the gateway: was a 500
        body = {"signature_name": bad, "instances": [1.0]}
        status, doc = client.http("POST", "/v1/models/demo:predict", body)
        assert status == 400 and "signature_name" in doc["error"]
    # GetModelStatus does not look at a label (get_model_status_impl.cc): every version
    assert client.http("GET", "/v1/models/demo/labels/none") == client.http(
        "GET", "/v1/models/demo"
    )
    # a path under /v1/ that is no API: 400 "Malformed request", as the official server
    for method, path in (
        ("POST", "/v1/models/demo:explode"),
        ("GET", "/v1/models/demo:predict"),
        ("PUT", "/v1/models/demo"),
        ("GET", "/v1/nothing/here"),
    ):
        status, doc = client.http(method, path, {} if method != "GET" else None)
        assert (status, doc) == (400, {"error": f"Malformed request: {method} {path}"})


def test_swaps_under_continuous_traffic_drop_nothing(server_env, model_factory) -> None:  # type: ignore[no-untyped-def]
    root, client, proc = server_env
    errors: list[str] = []
    answers: list[float] = []
    stop = threading.Event()

    def traffic() -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{proc.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "demo"
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], dtype=np.float32)))
        deadline = time.monotonic() + 120
        for _ in range(200_000):  # bounded in count and time
            if stop.is_set() or time.monotonic() > deadline:
                break
            try:
                resp = stub.Predict(req, timeout=10)
                answers.append(float(tf.make_ndarray(resp.outputs["y"])[0]))
            except grpc.RpcError as exc:
                errors.append(f"{exc.code()}: {exc.details()}")
        channel.close()

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for v, a in [(2, 3.0), (3, 4.0), (4, 5.0), (5, 6.0)]:  # latest-1 policy: each new dir swaps
            shutil.copytree(model_factory(a), root / "demo" / str(v))
            wait_for(
                lambda v=v: (
                    client.status("demo").get(v, (0,))[0] == STATE.AVAILABLE
                    and client.status("demo").get(v - 1, (0,))[0] == STATE.END
                )
            )
            wait_for(lambda a=a: a + 1.0 in answers, 30, f"traffic answered by v{v}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert errors == []
    assert len(answers) > 100
    assert {3.0, 4.0, 5.0, 6.0, 7.0} <= set(answers)  # every version answered (y = a*1 + 1)


def test_unknown_flag_is_a_clear_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfserving.server",
            "--port=1",
            "--model_base_path=/x",
            "--no_such_flag=3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0 and "--no_such_flag" in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "tfserving.server", "--port=8500"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0 and "--model_config_file or --model_base_path" in res.stderr
