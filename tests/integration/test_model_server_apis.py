"""The compatible model server's Classify, Regress and batching, with real SavedModels."""

from __future__ import annotations

import re
import shutil
import threading
import urllib.request
from pathlib import Path

import grpc
import pytest
from servers import ModelServerClient as Client

from modelsync.dev.procs import start_model_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_classify_and_regress(tmp_path: Path) -> None:
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    from modelsync.dev.models import make_example_model

    root = tmp_path / "models"
    make_example_model(root / "ex" / "1", 2.0, 1.0)
    proc = start_model_server(tmp_path, model_name="ex", model_base_path=str(root / "ex"))
    client = Client(proc.grpc_port, proc.rest_port)  # type: ignore[attr-defined]
    try:

        def examples(msg, xs):  # type: ignore[no-untyped-def]
            for x in xs:
                ex = msg.input.example_list.examples.add()
                ex.features.feature["x"].float_list.value.append(x)

        req = regression_pb2.RegressionRequest()
        req.model_spec.name = "ex"
        req.model_spec.signature_name = "regress"
        examples(req, [1.0, 2.0])
        resp = client.predict_stub.Regress(req, timeout=10)
        assert [round(r.value, 5) for r in resp.result.regressions] == [3.0, 5.0]
        assert resp.model_spec.version.value == 1

        creq = classification_pb2.ClassificationRequest()
        creq.model_spec.name = "ex"
        creq.model_spec.signature_name = "classify"
        ctx = creq.input.example_list_with_context
        ctx.context.features.feature["x"].float_list.value.append(-0.5)  # x from the context
        ctx.examples.add()
        cresp = client.predict_stub.Classify(creq, timeout=10)
        (row,) = cresp.result.classifications
        assert [c.label for c in row.classes] == ["neg", "pos"]
        assert abs(row.classes[1].score - 0.5) < 1e-6  # sigmoid(2 * -0.5 + 1) = 0.5

        # the predict signature is not a regression signature: TF Serving's answer
        req.model_spec.signature_name = ""
        with pytest.raises(grpc.RpcError) as info:
            client.predict_stub.Regress(req, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Expected regression signature method_name" in info.value.details()

        status, doc = client.http(
            "POST", "/v1/models/ex:regress", {"signature_name": "regress", "examples": [{"x": 1.5}]}
        )
        assert status == 200 and doc == {"result": [4.0]}
        status, doc = client.http(
            "POST",
            "/v1/models/ex:classify",
            {"signature_name": "classify", "context": {"x": -0.5}, "examples": [{}]},
        )
        assert status == 200 and doc["result"][0][0][0] == "neg"
        assert abs(doc["result"][0][1][1] - 0.5) < 1e-6
    finally:
        client.channel.close()
        assert proc.stop() == 0


def test_batching_merges_concurrent_requests(tmp_path: Path, model_factory) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "models"
    shutil.copytree(model_factory(2.0), root / "demo" / "1")
    params = tmp_path / "batching.config"
    params.write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 20000 }\n"
        "num_batch_threads { value: 1 }\n"
    )
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    proc = start_model_server(
        tmp_path,
        model_name="demo",
        model_base_path=str(root / "demo"),
        flags=[
            "--enable_batching",
            f"--batching_parameters_file={params}",
            f"--monitoring_config_file={monitoring}",
        ],
    )
    client = Client(proc.grpc_port, proc.rest_port)  # type: ignore[attr-defined]
    try:
        results: dict[int, list[float]] = {}
        errors: list[str] = []

        def one(i: int) -> None:
            try:
                _v, out = client.predict("demo", [float(i), float(i) + 0.5])
                results[i] = out["y"].tolist()
            except grpc.RpcError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert results == {i: [2 * i + 1.0, 2 * (i + 0.5) + 1.0] for i in range(32)}
        with urllib.request.urlopen(f"{client.rest}/metrics", timeout=5) as r:
            text = r.read().decode()
        batches = float(
            re.search(r'modelsync_model_server_batches\{model_name="demo"\} (\S+)', text).group(1)
        )  # type: ignore[union-attr]
        rows = float(
            re.search(
                r'modelsync_model_server_batched_rows\{model_name="demo"\} (\S+)', text
            ).group(1)
        )  # type: ignore[union-attr]
        assert rows == 64 and batches < 32  # 32 requests of 2 rows ran in fewer calls
    finally:
        client.channel.close()
        assert proc.stop() == 0
