"""Validate a version in the node's own TF Serving before any client request can reach it.

The version is loaded under a reserved shadow name (``_validate.<model>``, same files, a config
entry of its own); the real model's config lists it only once this passes. Requests replayed:

- ``assets.extra/tf_serving_warmup_requests`` when the version has one: TF Serving's own warmup
  format (a TFRecord of ``PredictionLog``: predict, classify and regress logs; at most 1,000
  records, TF Serving's ``WarmupConsts::kMaxNumRecords``);
- else one request built from the serving signature's input spec (zeros);
- and ``assets.extra/modelsync_expectations.json`` when present: requests with expected outputs.

It passes when every request is answered without error, every float output is finite and every
expectation holds. The replay's latencies are recorded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import grpc

from config_manager.checks import (
    ExpectationError,
    ValidationResult,
    default_inputs,
    mismatch,
    non_finite,
    parse_expectations,
)
from modelsync.protos import serving_protos
from modelsync.tensors import TensorError, fill, read, signatures
from modelsync.tfrecord import TFRecordError, read_records

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
EXPECTATIONS_FILE = "assets.extra/modelsync_expectations.json"
MAX_WARMUP_RECORDS = 1000


class Validator(Protocol):
    def validate(self, shadow: str, version: int, version_dir: Path) -> ValidationResult: ...
    def close(self) -> None: ...


class Failed(Exception):
    pass


class GrpcValidator:
    def __init__(self, target: str, timeout_s: float = 30.0) -> None:
        self.p = serving_protos()
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(target)

        def rpc(name: str, response: Any) -> Any:
            return self.channel.unary_unary(
                f"/tensorflow.serving.PredictionService/{name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response.FromString,
            )

        self._predict = rpc("Predict", self.p.PredictResponse)
        self._classify = rpc("Classify", self.p.ClassificationResponse)
        self._regress = rpc("Regress", self.p.RegressionResponse)
        self._metadata = rpc("GetModelMetadata", self.p.GetModelMetadataResponse)

    def close(self) -> None:
        self.channel.close()

    def validate(self, shadow: str, version: int, version_dir: Path) -> ValidationResult:
        latencies: list[float] = []
        source = "signature"
        try:
            warmup = version_dir / WARMUP_FILE
            if warmup.is_file():
                source = "warmup"
                self._replay(warmup.read_bytes(), shadow, version, latencies)
            else:
                self._default(shadow, version, latencies)
            expectations = version_dir / EXPECTATIONS_FILE
            if expectations.is_file():
                source += "+expectations"
                self._expectations(expectations.read_bytes(), shadow, version, latencies)
        except Failed as exc:
            return ValidationResult(False, str(exc), source, len(latencies), tuple(latencies))
        return ValidationResult(
            True,
            f"{len(latencies)} request(s) answered, outputs finite",
            source,
            len(latencies),
            tuple(latencies),
        )

    # --- the three kinds of requests -----------------------------------------------------------
    def _call(self, rpc: Any, request: Any, latencies: list[float], what: str) -> Any:
        started = time.perf_counter()
        try:
            answer = rpc(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise Failed(f"{what}: {exc.code().name}: {(exc.details() or '')[:300]}") from None
        latencies.append((time.perf_counter() - started) * 1000)
        return answer

    def _outputs(self, response: Any, what: str) -> dict[str, Any]:
        try:
            return {k: read(v) for k, v in response.outputs.items()}
        except TensorError as exc:
            raise Failed(f"{what}: {exc}") from None

    def _replay(self, data: bytes, shadow: str, version: int, latencies: list[float]) -> None:
        try:
            records = list(read_records(data, limit=MAX_WARMUP_RECORDS))
        except TFRecordError as exc:
            raise Failed(f"{WARMUP_FILE}: {exc} (is it a TFRecord of PredictionLog?)") from None
        for i, raw in enumerate(records):
            log = self.p.PredictionLog.FromString(raw)
            kind = log.WhichOneof("log_type")
            what = f"warmup record {i} ({kind})"
            if kind == "predict_log":
                req = log.predict_log.request
                self._aim(req, shadow, version)
                outputs = self._outputs(self._call(self._predict, req, latencies, what), what)
                problem = non_finite(outputs)
            elif kind in ("classify_log", "regress_log"):
                req = getattr(log, kind).request
                self._aim(req, shadow, version)
                rpc = self._classify if kind == "classify_log" else self._regress
                problem = self._scores_finite(self._call(rpc, req, latencies, what))
            else:
                raise Failed(f"{what}: unsupported log type for validation")
            if problem:
                raise Failed(f"{what}: {problem}")

    @staticmethod
    def _scores_finite(response: Any) -> str | None:
        import math

        result = response.result
        values = (
            [c.score for row in result.classifications for c in row.classes]
            if hasattr(result, "classifications")
            else [r.value for r in result.regressions]
        )
        bad = [v for v in values if not math.isfinite(v)]
        return f"{len(bad)} non-finite score(s), e.g. {bad[0]}" if bad else None

    @staticmethod
    def _aim(req: Any, shadow: str, version: int) -> None:
        req.model_spec.name = shadow
        req.model_spec.ClearField("version_label")
        req.model_spec.version.value = version

    def _signature(self, shadow: str, version: int, name: str, latencies: list[float]) -> Any:
        req = self.p.GetModelMetadataRequest()
        self._aim(req, shadow, version)
        req.metadata_field.append("signature_def")
        resp = self._call(self._metadata, req, latencies, "GetModelMetadata")
        sig_map = self.p.SignatureDefMap()
        resp.metadata["signature_def"].Unpack(sig_map)
        sigs = signatures(sig_map)
        if (name or "serving_default") not in sigs:
            raise Failed(f"no signature {name or 'serving_default'!r} (has: {sorted(sigs)})")
        latencies.pop()  # metadata is not a replayed request
        return sigs[name or "serving_default"]

    def _default(self, shadow: str, version: int, latencies: list[float]) -> None:
        sig = self._signature(shadow, version, "", latencies)
        req = self.p.PredictRequest()
        self._aim(req, shadow, version)
        for name, arr in default_inputs(sig).items():
            fill(req.inputs[name], arr)
        what = "a request built from the serving signature"
        problem = non_finite(self._outputs(self._call(self._predict, req, latencies, what), what))
        if problem:
            raise Failed(f"{what}: {problem}")

    def _expectations(self, data: bytes, shadow: str, version: int, latencies: list[float]) -> None:
        import numpy as np

        try:
            expectations = parse_expectations(data)
        except ExpectationError as exc:
            raise Failed(f"{EXPECTATIONS_FILE}: {exc}") from None
        for i, e in enumerate(expectations):
            what = f"expectation {i}"
            sig = self._signature(shadow, version, e.signature_name, latencies)
            req = self.p.PredictRequest()
            self._aim(req, shadow, version)
            req.model_spec.signature_name = e.signature_name
            for name, value in e.inputs.items():
                spec = sig.inputs.get(name)
                if spec is None:
                    raise Failed(f"{what}: no input {name!r} (inputs: {sorted(sig.inputs)})")
                dtype = object if spec.dtype == "string" else np.dtype(spec.dtype)
                fill(req.inputs[name], np.asarray(value, dtype=dtype))
            outputs = self._outputs(self._call(self._predict, req, latencies, what), what)
            problem = non_finite(outputs) or mismatch(e.outputs, outputs, e.tolerance)
            if problem:
                raise Failed(f"{what}: {problem}")
