"""The node's TF Serving over gRPC: Predict, GetModelMetadata (cached) and a readiness probe,
on one long-lived channel and the TensorFlow-free protos of :mod:`modelsync.protos`. Used by
the gateway (REST in) and the jobs worker (chunks of rows in).

Signatures are cached per (model, version) — a version's signature does not change — and, for
requests that name no version, the version TF Serving serves as latest is remembered for
``latest_ttl_s`` and replaced as soon as a Predict answer comes from another version (a rollover),
so that a new version with a new signature is used from its first answer on.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from modelsync.convert import BadInput, Inputs
from modelsync.protos import serving_protos
from modelsync.tensors import Array, Signature, TensorError, fill, read, signatures

DEFAULT_SIGNATURE = "serving_default"
_SERVICE = "/tensorflow.serving.PredictionService/"

# gRPC status of TF Serving -> the HTTP status a caller is answered (TF Serving's own REST table
# for the caller's mistakes; 502 for what TF Serving itself failed at, so that a 500 is always a
# bug of ours)
GRPC_TO_HTTP = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "CANCELLED": 503,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
}


class ServingError(Exception):
    """An answer other than success, with a message for the caller and the HTTP status it
    stands for; ``code`` is TF Serving's gRPC status name when TF Serving said so (the gateway
    raises it for its own limits too, as ``gateway.errors.ServingError``)."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    @classmethod
    def from_grpc(cls, code: str, details: str, target: str) -> ServingError:
        if code == "UNAVAILABLE" and ("connect" in details.lower() or not details):
            return cls(503, f"TF Serving at {target} is unavailable: {details}", code)
        return cls(GRPC_TO_HTTP.get(code, 502), details or code, code)


@dataclass(frozen=True)
class Answer:
    version: int
    outputs: dict[str, Array]
    signature: Signature


@dataclass
class Attempt:
    """The version a request was built for (None until known): a failure's version, for the
    gateway's per-version telemetry."""

    version: int | None = None


class TFServingClient:
    def __init__(
        self, target: str, timeout_s: float = 30.0, latest_ttl_s: float = 2.0, cache_size: int = 256
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.latest_ttl_s = latest_ttl_s
        self.cache_size = cache_size
        p = serving_protos()
        self._req = p.get("tensorflow.serving.PredictRequest")
        self._meta_req = p.get("tensorflow.serving.GetModelMetadataRequest")
        self._sig_map = p.get("tensorflow.serving.SignatureDefMap")
        self._status_req = p.get("tensorflow.serving.GetModelStatusRequest")
        self.channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", 256 * 2**20),
                ("grpc.max_send_message_length", 256 * 2**20),
            ],
        )
        ser: Callable[[Any], bytes] = lambda m: m.SerializeToString()  # noqa: E731
        self._predict = self.channel.unary_unary(
            _SERVICE + "Predict",
            request_serializer=ser,
            response_deserializer=p.get("tensorflow.serving.PredictResponse").FromString,
        )
        self._metadata = self.channel.unary_unary(
            _SERVICE + "GetModelMetadata",
            request_serializer=ser,
            response_deserializer=p.get("tensorflow.serving.GetModelMetadataResponse").FromString,
        )
        self._status = self.channel.unary_unary(
            "/tensorflow.serving.ModelService/GetModelStatus",
            request_serializer=ser,
            response_deserializer=p.get("tensorflow.serving.GetModelStatusResponse").FromString,
        )
        self._lock = threading.Lock()
        self._sigs: OrderedDict[tuple[str, int], dict[str, Signature]] = OrderedDict()
        self._latest: OrderedDict[str, tuple[int, float]] = OrderedDict()

    # --- metadata ------------------------------------------------------------------------

    def _rpc(self, fn: Any, req: Any, timeout_s: float | None = None) -> Any:
        try:
            return fn(req, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") and exc.code() else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise ServingError.from_grpc(code, details or "", self.target) from exc

    def _fetch(self, model: str, version: int | None) -> tuple[int, dict[str, Signature]]:
        req = self._meta_req()
        req.model_spec.name = model
        if version is not None:
            req.model_spec.version.value = version
        req.metadata_field.append("signature_def")
        resp = self._rpc(self._metadata, req)
        sig_map = self._sig_map()
        if "signature_def" not in resp.metadata or not resp.metadata["signature_def"].Unpack(
            sig_map
        ):
            raise ServingError(502, f"TF Serving answered no signature_def for {model!r}")
        answered = int(resp.model_spec.version.value)
        sigs = signatures(sig_map)
        with self._lock:
            self._sigs[(model, answered)] = sigs
            self._sigs.move_to_end((model, answered))
            while len(self._sigs) > self.cache_size:
                self._sigs.popitem(last=False)
        return answered, sigs

    def signatures(
        self, model: str, version: int | None, *, refresh: bool = False
    ) -> tuple[int, dict[str, Signature]]:
        """(version, its signatures); ``version=None``: the version served as latest."""
        now = time.monotonic()
        with self._lock:
            if version is None and not refresh:
                latest = self._latest.get(model)
                if latest is not None and now - latest[1] < self.latest_ttl_s:
                    version_known = latest[0]
                    cached = self._sigs.get((model, version_known))
                    if cached is not None:
                        return version_known, cached
            elif version is not None:
                cached = self._sigs.get((model, version))
                if cached is not None:
                    return version, cached
        answered, sigs = self._fetch(model, version)
        if version is None:
            self._remember_latest(model, answered, now)
        return answered, sigs

    def _remember_latest(self, model: str, version: int, now: float) -> None:
        with self._lock:
            self._latest[model] = (version, now)
            self._latest.move_to_end(model)
            while len(self._latest) > self.cache_size:
                self._latest.popitem(last=False)

    def known(self) -> dict[str, tuple[int, Signature]]:
        """(newest version seen, its serving_default or only signature) of each model."""
        with self._lock:
            out: dict[str, tuple[int, Signature]] = {}
            for (model, version), sigs in self._sigs.items():
                sig = sigs.get(DEFAULT_SIGNATURE) or (
                    next(iter(sigs.values())) if len(sigs) == 1 else None
                )
                if sig is not None and (model not in out or out[model][0] < version):
                    out[model] = (version, sig)
        return dict(sorted(out.items()))

    # --- predict -------------------------------------------------------------------------

    @staticmethod
    def _pick(model: str, version: int, sigs: dict[str, Signature], name: str) -> Signature:
        sig = sigs.get(name or DEFAULT_SIGNATURE)
        if sig is None:
            raise BadInput(
                f"model {model!r} version {version} has no signature "
                f"{name or DEFAULT_SIGNATURE!r} (it has {sorted(sigs)})"
            )
        return sig

    def _call(self, model: str, version: int | None, signature: str, inputs: Inputs) -> Any:
        req = self._req()
        req.model_spec.name = model
        req.model_spec.signature_name = signature or DEFAULT_SIGNATURE
        if version is not None:
            req.model_spec.version.value = version
        for key, arr in inputs.items():
            fill(req.inputs[key], arr)
        return self._rpc(self._predict, req)

    def predict(
        self,
        model: str,
        version: int | None,
        build: Callable[[Signature], Inputs],
        signature: str = "",
        attempt: Attempt | None = None,
    ) -> Answer:
        """Predict with the inputs ``build(signature)`` returns (it raises BadInput for bad
        input). Without a version, a request that does not fit the signature of the version
        believed latest (BadInput, or TF Serving's INVALID_ARGUMENT) is built and sent once more
        if TF Serving's latest version is another one now: a rollover to a new signature.
        ``attempt`` notes the version the request was built for (and sent to, by name)."""
        attempt = attempt if attempt is not None else Attempt()
        attempt.version = version
        used, sigs = self.signatures(model, version)
        attempt.version = used
        try:
            sig = self._pick(model, used, sigs, signature)
            resp = self._call(model, version, signature, build(sig))
        except (BadInput, ServingError) as exc:
            # the input did not fit the signature of the version believed latest: if another
            # version is latest now (a rollover), try once more with its signature
            if version is not None or (
                isinstance(exc, ServingError) and exc.code != "INVALID_ARGUMENT"
            ):
                raise
            fresh, sigs = self.signatures(model, None, refresh=True)
            if fresh == used:
                raise
            used = attempt.version = fresh
            sig = self._pick(model, fresh, sigs, signature)
            resp = self._call(model, version, signature, build(sig))
        answered = attempt.version = int(resp.model_spec.version.value)
        if version is None and answered != used:
            _v, sigs = self.signatures(model, answered)
            sig = sigs.get(signature or DEFAULT_SIGNATURE, sig)
            self._remember_latest(model, answered, time.monotonic())
        try:
            outputs = {k: read(v) for k, v in sorted(resp.outputs.items())}
        except TensorError as exc:
            raise ServingError(501, str(exc)) from exc
        return Answer(answered, outputs, sig)

    def ready(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """TF Serving answers gRPC (NOT_FOUND for a model that does not exist is an answer)."""
        req = self._status_req()
        req.model_spec.name = "__modelsync_gateway_readyz__"
        try:
            self._status(req, timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, None):
                return False, f"TF Serving at {self.target}: {code.name if code else exc}"
        return True, "TF Serving answers"

    def close(self) -> None:
        self.channel.close()
