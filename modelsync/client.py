"""A small gRPC Predict client that does not import TensorFlow (for the demo and benchmarks)."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from modelsync.protos import serving_protos

_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}
_ENUM = {np.dtype(v): k for k, v in _DTYPES.items()}


def to_tensor(arr: np.ndarray, proto: Any) -> None:
    proto.dtype = _ENUM[arr.dtype]
    for n in arr.shape:
        proto.tensor_shape.dim.add().size = n
    proto.tensor_content = arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def from_tensor(proto: Any) -> np.ndarray:
    dtype = _DTYPES.get(proto.dtype)
    if dtype is None:
        raise ValueError(f"unsupported dtype {proto.dtype}")
    shape = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=np.dtype(dtype).newbyteorder("<")) \
            .reshape(shape)
    field = {np.float32: "float_val", np.float64: "double_val", np.int32: "int_val",
             np.int64: "int64_val"}[dtype]
    values = np.array(list(getattr(proto, field)), dtype=dtype)
    size = int(np.prod(shape)) if shape else 1
    if values.size == 1 and size != 1:
        values = np.full(size, values[0], dtype=dtype)
    return values.reshape(shape)


class PredictClient:
    def __init__(self, target: str) -> None:
        self.protos = serving_protos()
        self.channel = grpc.insecure_channel(target)
        self._predict = self.channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.protos.PredictResponse.FromString)

    def request(self, model: str, inputs: dict[str, Any], *, version: int | None = None,
                label: str | None = None, signature: str = "") -> Any:
        req = self.protos.PredictRequest()
        req.model_spec.name = model
        req.model_spec.signature_name = signature
        if version is not None:
            req.model_spec.version.value = version
        elif label:
            req.model_spec.version_label = label
        for key, value in inputs.items():
            arr = np.asarray(value)
            if arr.dtype == np.float64:
                arr = arr.astype(np.float32)
            to_tensor(arr, req.inputs[key])
        return req

    def predict(self, model: str, inputs: dict[str, Any], *, version: int | None = None,
                label: str | None = None, signature: str = "",
                timeout_s: float = 5.0) -> tuple[int, dict[str, np.ndarray]]:
        req = self.request(model, inputs, version=version, label=label, signature=signature)
        resp = self._predict(req, timeout=timeout_s)
        return resp.model_spec.version.value, {k: from_tensor(v) for k, v in resp.outputs.items()}

    def call(self, req: Any, timeout_s: float = 5.0) -> Any:
        return self._predict(req, timeout=timeout_s)

    def close(self) -> None:
        self.channel.close()
