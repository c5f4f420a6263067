"""A small gRPC Predict client that does not import TensorFlow (for the demo and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np

from modelsync.protos import serving_protos
from modelsync.tensors import fill, read


def to_tensor(arr: np.ndarray, proto: Any) -> None:
    """Write ``arr`` into the (empty) TensorProto ``proto`` (modelsync.tensors, TF-free)."""
    fill(proto, arr)


from_tensor = read  # a TensorProto as an array


class PredictClient:
    def __init__(self, target: str, options: Sequence[tuple[str, Any]] = ()) -> None:
        """``options``: gRPC channel arguments (e.g. ``grpc.max_reconnect_backoff_ms``)."""
        self.protos = serving_protos()
        self.channel = grpc.insecure_channel(target, options=list(options))
        self._predict = self.channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.protos.PredictResponse.FromString,
        )

    def request(
        self,
        model: str,
        inputs: dict[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
    ) -> Any:
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

    def predict(
        self,
        model: str,
        inputs: dict[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        timeout_s: float = 5.0,
    ) -> tuple[int, dict[str, np.ndarray]]:
        req = self.request(model, inputs, version=version, label=label, signature=signature)
        resp = self._predict(req, timeout=timeout_s)
        return resp.model_spec.version.value, {k: from_tensor(v) for k, v in resp.outputs.items()}

    def call(self, req: Any, timeout_s: float = 5.0) -> Any:
        return self._predict(req, timeout=timeout_s)

    def close(self) -> None:
        self.channel.close()
