"""Test-side clients of the compatible model server (official tensorflow-serving-api stubs and
TF Serving's REST API), shared by the integration suites."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2
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


def model_spec(spec: Any, model: str, version: int | None, label: str | None) -> None:
    spec.name = model
    if version is not None:
        spec.version.value = version
    if label:
        spec.version_label = label


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
        resp = self.predict_response(
            model,
            {"x": np.array(xs, dtype=np.float32)},
            version,
            label,
            signature,
            output_filter,
        )
        return resp.model_spec.version.value, {
            k: tf.make_ndarray(v) for k, v in resp.outputs.items()
        }

    def predict_response(
        self,
        model: str,
        inputs: dict[str, Any],
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        output_filter: tuple[str, ...] = (),
    ) -> Any:
        """The PredictResponse; each input an array (sent as tf.make_tensor_proto writes it)
        or a TensorProto as it is."""
        req = predict_pb2.PredictRequest()
        model_spec(req.model_spec, model, version, label)
        req.model_spec.signature_name = signature
        for key, value in inputs.items():
            if not isinstance(value, tensor_pb2.TensorProto):
                value = tf.make_tensor_proto(value)
            req.inputs[key].CopyFrom(value)
        req.output_filter.extend(output_filter)
        return self.predict_stub.Predict(req, timeout=60)

    def status(self, model: str) -> dict[int, tuple[int, int, str]]:
        return {v: (state, code, msg) for v, state, code, msg in self.status_entries(model)}

    def status_entries(
        self, model: str, version: int | None = None, label: str | None = None
    ) -> list[tuple[int, int, int, str]]:
        """GetModelStatus's entries in the order of the answer: (version, state, code, msg)."""
        req = get_model_status_pb2.GetModelStatusRequest()
        model_spec(req.model_spec, model, version, label)
        resp = self.model_stub.GetModelStatus(req, timeout=10)
        return [
            (s.version, s.state, s.status.error_code, s.status.error_message)
            for s in resp.model_version_status
        ]

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
