"""gRPC PredictionService and ModelService, on the official tensorflow-serving-api protos."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from modelsync.log import get_logger
from modelsync.tensors import as_proto_field, as_proto_tensor_content
from tfserving.config import model_configs
from tfserving.errors import ServingError
from tfserving.manager import ModelManager
from tfserving.metrics import Answering, ServerMetrics
from tfserving.servable import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    classify_rows,
    predict_signature_name,
    regress_values,
    run_examples,
    serialized_examples,
    tensor_to_ndarray,
)

log = get_logger("model_server")

_ERROR_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def _spec(request: Any) -> tuple[str, int | None, str | None]:
    """(name, version, label) of a request's ModelSpec; none is INVALID_ARGUMENT "Missing
    ModelSpec", as every TF Serving API answers (predict_impl.cc, get_model_status_impl.cc)."""
    if not request.HasField("model_spec"):
        raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
    model_spec = request.model_spec
    which = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if which == "version" else None
    label = model_spec.version_label if which == "version_label" else None
    return model_spec.name, version, label


def _answer_spec(spec: Any, name: str, version: int, signature_name: str | None) -> None:
    """The answer's ModelSpec, as TF Serving's ``MakeModelSpec``
    (tensorflow_serving/servables/tensorflow/util.cc): the requested name, the version that
    answered (also for a name-only or labelled request; never the label), and the signature
    name when the API has one, ``serving_default`` for an empty one."""
    spec.name = name
    spec.version.value = version
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE


def _abort(context: grpc.ServicerContext, exc: ServingError) -> None:
    context.abort(grpc.StatusCode[exc.code], exc.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensor_content``: answer Predict with every output packed in ``tensor_content``
    (``--enable_serialization_as_tensor_content``); by default each value is in its typed field,
    as TF Serving answers (``kAsProtoField``, server_core.h; predict_util.cc)."""

    def __init__(
        self, manager: ModelManager, metrics: ServerMetrics, tensor_content: bool = False
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self._encode = as_proto_tensor_content if tensor_content else as_proto_field

    def _observe(
        self,
        api: str,
        name: str,
        fn: Callable[[Answering], Any],
        context: grpc.ServicerContext,
    ) -> Any:
        """Run ``fn`` and record it as TF Serving's Predict/Classify/Regress do
        (prediction_service_impl.cc): counted by status, latency (µs) when OK; and per version
        (``fn`` notes the version it reached in its ``Answering``)."""
        started = time.perf_counter()
        answering = Answering()

        def record(status: str) -> None:
            micros = int((time.perf_counter() - started) * 1_000_000)
            self.metrics.request(api, "GRPC", name, status, micros, answering.version)

        try:
            result = fn(answering)
        except ServingError as exc:
            record(exc.code)
            _abort(context, exc)
            raise  # unreachable: abort raises
        except Exception:
            record("UNKNOWN")  # what grpc answers for an exception in a handler
            raise
        record("OK")
        return result

    @staticmethod
    def _unobserved(fn: Callable[[], Any], context: grpc.ServicerContext) -> Any:
        """Run ``fn`` without metrics: TF Serving records none for gRPC GetModelMetadata."""
        try:
            return fn()
        except ServingError as exc:
            _abort(context, exc)
            raise  # unreachable: abort raises

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run(answering: Answering) -> Any:
            name, version, label = _spec(request)
            with self.manager.acquire(name, version, label) as (chosen, servable):
                answering.version = chosen
                signature = predict_signature_name(servable, request.model_spec.signature_name)
                inputs = {k: tensor_to_ndarray(t, k) for k, t in request.inputs.items()}
                outputs = servable.run(signature, inputs, list(request.output_filter))
            resp = predict_pb2.PredictResponse()
            _answer_spec(resp.model_spec, name, chosen, signature)
            for key, arr in outputs.items():
                self._encode(resp.outputs[key], arr)
            return resp

        return self._observe("Predict", request.model_spec.name, run, context)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            name, version, label = _spec(request)
            if not request.metadata_field:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    "GetModelMetadataRequest must specify at least one metadata_field",
                )
            for f in request.metadata_field:
                if f != "signature_def":
                    raise ServingError("INVALID_ARGUMENT", f"Metadata field {f} is not supported")
            with self.manager.acquire(name, version, label) as (chosen, servable):
                sdm = get_model_metadata_pb2.SignatureDefMap()
                for key, sig in servable.meta_graph.signature_def.items():
                    sdm.signature_def[key].CopyFrom(sig)
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            _answer_spec(resp.model_spec, name, chosen, None)  # get_model_metadata_impl.cc
            resp.metadata["signature_def"].Pack(sdm)
            return resp

        return self._unobserved(run, context)

    def _examples_call(
        self,
        api: str,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        build: Callable[[Any, Any], None],
        response: Any,
    ) -> Any:
        def run(answering: Answering) -> Any:
            name, version, label = _spec(request)
            examples = serialized_examples(request.input)
            with self.manager.acquire(name, version, label) as (chosen, servable):
                answering.version = chosen
                outputs = run_examples(
                    servable, request.model_spec.signature_name, method, examples
                )
            _answer_spec(
                response.model_spec, name, chosen, request.model_spec.signature_name
            )  # classifier.cc / regressor.cc RunClassify / RunRegress
            build(response.result, outputs)
            return response

        return self._observe(api, request.model_spec.name, run, context)

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
        def build(result: Any, outputs: dict[str, Any]) -> None:
            for row in classify_rows(outputs):
                classification = result.classifications.add()
                for label, score in row:
                    cls = classification.classes.add()
                    cls.label, cls.score = label, score

        return self._examples_call(
            "Classify",
            CLASSIFY_METHOD,
            request,
            context,
            build,
            classification_pb2.ClassificationResponse(),
        )

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
        def build(result: Any, outputs: dict[str, Any]) -> None:
            for value in regress_values(outputs):
                result.regressions.add().value = value

        return self._examples_call(
            "Regress", REGRESS_METHOD, request, context, build, regression_pb2.RegressionResponse()
        )

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "MultiInference is not supported by the modelsync compatible server",
        )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(
        self,
        manager: ModelManager,
        on_reload: Callable[[Any], None] | None = None,
        reload_wait_s: float = 600.0,
    ) -> None:
        self.manager = manager
        self.on_reload = on_reload
        self.reload_wait_s = reload_wait_s

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            name, version, _label = _spec(request)  # a label is not looked at, as TF Serving
            statuses = self.manager.status(name, version)
        except ServingError as exc:
            _abort(context, exc)
        resp = get_model_status_pb2.GetModelStatusResponse()
        for s in statuses:
            mvs = resp.model_version_status.add()
            mvs.version = s.version
            mvs.state = int(s.state)
            mvs.status.error_code = _ERROR_CODES.get(s.error_code, 2)
            mvs.status.error_message = s.error_message
        return resp

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        resp = model_management_pb2.ReloadConfigResponse()
        started = time.monotonic()
        try:
            configs = model_configs(request.config)
            self.manager.reload(configs, wait_timeout_s=self.reload_wait_s)
            if self.on_reload:
                self.on_reload(request.config)
            resp.status.error_code = 0
            log.info(
                "config_reloaded", models=len(configs), seconds=round(time.monotonic() - started, 3)
            )
        except ServingError as exc:
            resp.status.error_code = _ERROR_CODES.get(exc.code, 2)
            resp.status.error_message = exc.message
            log.warning("config_reload_failed", code=exc.code, error=exc.message)
        return resp
