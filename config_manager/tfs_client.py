"""The ``ServingClient`` on TF Serving's gRPC ModelService, without importing TensorFlow (see
modelsync.protos)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import text_format

from config_manager.serving import (
    STATE_NAMES,
    ModelUnknown,
    ReloadTimeout,
    ServingUnavailable,
    VersionState,
)
from modelsync.protos import serving_protos


class GrpcServingClient:
    def __init__(self, target: str, timeout_s: float = 10.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.protos = serving_protos()
        self.channel = grpc.insecure_channel(target)
        p = self.protos
        self._status = self.channel.unary_unary(
            "/tensorflow.serving.ModelService/GetModelStatus",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=p.GetModelStatusResponse.FromString,
        )
        self._reload = self.channel.unary_unary(
            "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=p.ReloadConfigResponse.FromString,
        )

    def model_status(self, model: str) -> list[VersionState]:
        req = self.protos.GetModelStatusRequest()
        req.model_spec.name = model
        try:
            resp = self._status(req, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise ModelUnknown(model) from None
            raise ServingUnavailable(f"{self.target}: {exc.code().name}: {exc.details()}") from None
        return [
            VersionState(
                s.version,
                STATE_NAMES.get(s.state, str(s.state)),
                s.status.error_code,
                s.status.error_message,
            )
            for s in resp.model_version_status
        ]

    def reload(self, config_text: str, timeout_s: float) -> tuple[int, str]:
        """HandleReloadConfigRequest; returns TF Serving's (error_code, error_message)."""
        req = self.protos.ReloadConfigRequest()
        text_format.Parse(config_text, req.config)
        try:
            resp: Any = self._reload(req, timeout=timeout_s)
        except grpc.RpcError as exc:
            error = (
                ReloadTimeout
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                else ServingUnavailable
            )
            raise error(f"{self.target}: {exc.code().name}: {exc.details()}") from None
        return resp.status.error_code, resp.status.error_message

    def close(self) -> None:
        self.channel.close()
