"""Test-side clients of the compatible model server (official tensorflow-serving-api stubs and
TF Serving's REST API), shared by the integration suites."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


def config_text(models: dict[str, dict]) -> str:
    parts = []
    for name, m in models.items():
        lines = [
            f'name: "{name}"',
            f'base_path: "{m["base_path"]}"',
            'model_platform: "tensorflow"',
        ]
        if "versions" in m:
            vs = " ".join(f"versions: {v}" for v in m["versions"])
            lines.append(f"model_version_policy {{ specific {{ {vs} }} }}")
        for label, v in m.get("labels", {}).items():
            lines.append(f'version_labels {{ key: "{label}" value: {v} }}')
        parts.append("config { " + " ".join(lines) + " }")
    return "model_config_list { " + " ".join(parts) + " }"


class ModelServerClient:
    def __init__(self, port: int, rest_port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_stub = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.rest = f"http://127.0.0.1:{rest_port}"

    def predict(
        self,
        model: str,
        xs: list[float],
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        output_filter: tuple[str, ...] = (),
    ) -> tuple[int, dict[str, np.ndarray]]:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        if version is not None:
            req.model_spec.version.value = version
        if label:
            req.model_spec.version_label = label
        req.model_spec.signature_name = signature
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(xs, dtype=np.float32)))
        req.output_filter.extend(output_filter)
        resp = self.predict_stub.Predict(req, timeout=10)
        return resp.model_spec.version.value, {
            k: tf.make_ndarray(v) for k, v in resp.outputs.items()
        }

    def status(self, model: str) -> dict[int, tuple[int, int, str]]:
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = model
        resp = self.model_stub.GetModelStatus(req, timeout=10)
        return {
            s.version: (s.state, s.status.error_code, s.status.error_message)
            for s in resp.model_version_status
        }

    def reload(self, text: str) -> tuple[int, str]:
        req = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(text, req.config)
        resp = self.model_stub.HandleReloadConfigRequest(req, timeout=120)
        return resp.status.error_code, resp.status.error_message

    def http(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.rest + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
