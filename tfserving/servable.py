"""One loaded SavedModel version: signatures, metadata and request execution (TensorFlow)."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfserving.errors import ServingError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def read_meta_graph(
    path: str | os.PathLike[str], tags: tuple[str, ...] = ("serve",)
) -> meta_graph_pb2.MetaGraphDef:
    base = Path(path)
    sm = saved_model_pb2.SavedModel()
    if (base / "saved_model.pb").exists():
        sm.ParseFromString((base / "saved_model.pb").read_bytes())
    elif (base / "saved_model.pbtxt").exists():
        from google.protobuf import text_format

        text_format.Parse((base / "saved_model.pbtxt").read_text(), sm)
    else:
        raise FileNotFoundError(f"{base}: no saved_model.pb or saved_model.pbtxt")
    for mg in sm.meta_graphs:
        if set(tags) <= set(mg.meta_info_def.tags):
            return mg
    raise ValueError(f"{base}: no MetaGraph with tags {list(tags)}")


@dataclass
class Signature:
    name: str
    fn: Any
    inputs: dict[str, tf.TensorSpec]
    outputs: list[str]
    method_name: str


class Servable:
    """A SavedModel loaded for serving. ``run`` is thread-safe."""

    def __init__(
        self, path: str | os.PathLike[str], tags: tuple[str, ...] = ("serve",), batching: Any = None
    ) -> None:
        self.path = str(path)
        self.batching = batching  # BatchingParameters, or None: every request runs alone
        self._batchers: dict[str, Any] = {}
        self._batch_lock = threading.Lock()
        self.meta_graph = read_meta_graph(path, tags)
        self._model = tf.saved_model.load(self.path, tags=list(tags))
        self.signatures: dict[str, Signature] = {}
        for name, fn in self._model.signatures.items():
            _args, kwargs = fn.structured_input_signature
            sig_def = self.meta_graph.signature_def.get(name)
            self.signatures[name] = Signature(
                name=name,
                fn=fn,
                inputs=dict(kwargs),
                outputs=sorted(fn.structured_outputs.keys()),
                method_name=sig_def.method_name if sig_def is not None else PREDICT_METHOD,
            )

    def signature(self, name: str) -> Signature:
        """The signature a REST predict names: an unknown one is INVALID_ARGUMENT, as
        ``HttpRestApiHandler::GetInfoMap`` (http_rest_api_handler.cc) answers."""
        sig = self.signatures.get(name or DEFAULT_SIGNATURE)
        if sig is None:
            raise ServingError(
                "INVALID_ARGUMENT",
                f'Serving signature name: "{name or DEFAULT_SIGNATURE}" not found in signature def',
            )
        return sig

    def run(
        self,
        signature_name: str,
        inputs: dict[str, np.ndarray],
        output_filter: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        sig = self.signature(signature_name)
        self._check_inputs(sig, inputs)
        for i, key in enumerate(output_filter or []):
            if key not in sig.outputs:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"output tensor alias not found in signature: {key} Outputs "
                    f"expected to be in the set {{{','.join(sig.outputs)}}}.",
                )
            if key in (output_filter or [])[:i]:
                raise ServingError("INVALID_ARGUMENT", f"duplicate output tensor alias: {key}")
        feed = {}
        for i, (key, spec) in enumerate(sorted(sig.inputs.items())):
            arr = inputs[key]
            if arr.dtype != spec.dtype.as_numpy_dtype and not (
                spec.dtype == tf.string and arr.dtype.kind in "SUO"
            ):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expects arg[{i}] to be {_dtype_text(spec.dtype)} but "
                    f"{_dtype_text(tf.as_dtype(arr.dtype))} is provided",
                )
            if not spec.shape.is_compatible_with(arr.shape):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"input {key!r}: shape {list(arr.shape)} is not compatible with {spec.shape}",
                )
            feed[key] = arr
        wanted = output_filter or sig.outputs
        batcher = self._batcher(sig) if self.batching is not None else None
        outputs = batcher.submit(feed) if batcher is not None else self._call(sig, feed)
        return {k: outputs[k] for k in wanted}

    def _check_inputs(self, sig: Signature, inputs: dict[str, np.ndarray]) -> None:
        """As TF Serving's ``VerifyRequestInputsSize`` (predict_util.cc) and TensorFlow's
        ``saved_model::GetInputValues`` (cc/saved_model/util.cc); no signature has defaults."""
        given, expected = sorted(inputs), sorted(sig.inputs)
        if len(given) != len(expected):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input size does not match signature: {len(given)}!={len(expected)} "
                f"len({{{','.join(given)}}}) != len({{{','.join(expected)}}}). Sent extra: "
                f"{{{','.join(sorted(set(given) - set(expected)))}}}. Missing but required: "
                f"{{{','.join(sorted(set(expected) - set(given)))}}}.",
            )
        sig_def = self.meta_graph.signature_def.get(sig.name)
        for alias in expected:
            if alias not in inputs:
                feed = sig_def.inputs[alias].name if sig_def is not None else alias
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Signature input alias: {alias}(feed name: {feed}) not found in request "
                    f"and no default value provided. Inputs expected to be in the request "
                    f"{{{','.join(given)}}}, or default input alias set: ",
                )

    def _call(self, sig: Signature, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            result = sig.fn(
                **{k: tf.constant(v, dtype=sig.inputs[k].dtype) for k, v in feed.items()}
            )
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise ServingError("INVALID_ARGUMENT", _one_line(exc)) from exc
        except tf.errors.OpError as exc:
            raise ServingError("INTERNAL", _one_line(exc)) from exc
        return {k: result[k].numpy() for k in sig.outputs}

    def _batcher(self, sig: Signature) -> Any:
        """The signature's batcher, if every input has a variable first dimension."""
        if not all(spec.shape.rank and spec.shape[0] is None for spec in sig.inputs.values()):
            return None
        with self._batch_lock:
            batcher = self._batchers.get(sig.name)
            if batcher is None:
                from tfserving.batching import Batcher

                batcher = self._batchers[sig.name] = Batcher(
                    functools.partial(self._call, sig), self.batching
                )
            return batcher

    def batch_stats(self) -> tuple[int, int]:
        with self._batch_lock:
            return (
                sum(b.batches for b in self._batchers.values()),
                sum(b.rows for b in self._batchers.values()),
            )

    def close(self) -> None:
        with self._batch_lock:
            for b in self._batchers.values():
                b.close()


_CC_DTYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half"}


def _dtype_text(dtype: Any) -> str:
    """TensorFlow's C++ DataTypeString, which TF Serving's messages use."""
    return _CC_DTYPE_NAMES.get(dtype.name, dtype.name)


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return " ".join(text.split())[:2000]


def load_error_code(exc: BaseException) -> str:
    if isinstance(exc, ServingError):  # a failed warmup
        return exc.code
    if isinstance(exc, FileNotFoundError | tf.errors.NotFoundError):
        return "NOT_FOUND"
    if isinstance(exc, tf.errors.DataLossError):
        return "DATA_LOSS"
    if isinstance(exc, tf.errors.InvalidArgumentError | ValueError):
        return "INVALID_ARGUMENT"
    return "UNKNOWN"


def predict_signature_name(servable: Any, name: str) -> str:
    """The signature a gRPC Predict names (empty: ``serving_default``); one not in the
    MetaGraph is FAILED_PRECONDITION, as ``RunPredict`` (tensorflow_serving/servables/
    tensorflow/predict_util.cc) answers."""
    key = name or DEFAULT_SIGNATURE
    if key not in servable.meta_graph.signature_def:
        raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
    return key


def examples_signature_name(servable: Any, name: str) -> str:
    """The signature a Classify or Regress names (gRPC or REST); one not in the MetaGraph is
    INVALID_ARGUMENT, as ``GetClassificationSignatureDef`` (classifier.cc) and
    ``GetRegressionSignatureDef`` (regressor.cc) answer."""
    key = name or DEFAULT_SIGNATURE
    if key not in servable.meta_graph.signature_def:
        raise ServingError("INVALID_ARGUMENT", f"No signature was found with the name: {key}")
    return key


def tensor_to_ndarray(proto: Any, alias: str) -> np.ndarray:
    """A request's input tensor as TF Serving reads it, with TensorFlow's ``Tensor::FromProto``:
    typed fields (fewer values than elements repeat the last one, more are cut) or
    ``tensor_content``, strings included; one it cannot read is INVALID_ARGUMENT "tensor parsing
    error: <alias>", as ``saved_model::GetInputValues`` (tensorflow/cc/saved_model/util.cc)."""
    with contextlib.suppress(Exception):  # fast, but refuses some that FromProto reads
        return tf.make_ndarray(proto)
    try:
        dtype = tf.dtypes.as_dtype(proto.dtype)
        return tf.io.parse_tensor(proto.SerializeToString(), dtype).numpy()
    except Exception as exc:
        raise ServingError("INVALID_ARGUMENT", f"tensor parsing error: {alias}") from exc


def serialized_examples(input_proto: Any) -> list[bytes]:
    """tensorflow.serving.Input -> serialized tf.Examples (context merged into each example)."""
    which = input_proto.WhichOneof("kind")
    if which == "example_list":
        examples = list(input_proto.example_list.examples)
        context = None
    elif which == "example_list_with_context":
        examples = list(input_proto.example_list_with_context.examples)
        context = input_proto.example_list_with_context.context
    else:
        raise ServingError("INVALID_ARGUMENT", "Input is empty.")
    if not examples:
        raise ServingError("INVALID_ARGUMENT", "Input is empty.")
    out = []
    for ex in examples:
        if context is not None:
            merged = type(ex)()
            merged.CopyFrom(context)
            merged.MergeFrom(ex)
            ex = merged
        out.append(ex.SerializeToString())
    return out


def run_examples(
    servable: Servable, signature_name: str, method: str, examples: list[bytes]
) -> dict[str, np.ndarray]:
    """Run a classify or regress signature on serialized tf.Examples."""
    sig = servable.signature(examples_signature_name(servable, signature_name))
    if sig.method_name != method:
        kind = "classification" if method == CLASSIFY_METHOD else "regression"
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}",
        )
    if len(sig.inputs) != 1:
        raise ServingError(
            "INVALID_ARGUMENT", f"Expected one input Tensor in the {sig.name} signature"
        )
    (key,) = sig.inputs
    outputs = servable.run(sig.name, {key: np.array(examples, dtype=object)})
    for name, arr in outputs.items():
        if arr.shape[:1] != (len(examples),):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expected output Tensor {name} to have {len(examples)} rows, "
                f"got shape {list(arr.shape)}",
            )
    return outputs


def classify_rows(outputs: dict[str, np.ndarray]) -> list[list[tuple[str, float]]]:
    """Per example, (label, score) pairs from the ``classes`` and/or ``scores`` outputs."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    if classes is None and scores is None:
        raise ServingError(
            "INVALID_ARGUMENT", "classification signature has neither classes nor scores outputs"
        )
    first = classes if classes is not None else scores
    assert first is not None
    rows = []
    for i in range(len(first)):
        width = first[i].size
        labels = (
            [c.decode() if isinstance(c, bytes) else str(c) for c in classes[i].reshape(-1)]
            if classes is not None
            else [""] * width
        )
        values = scores[i].reshape(-1).tolist() if scores is not None else [0.0] * width
        rows.append(list(zip(labels, values, strict=True)))
    return rows


def regress_values(outputs: dict[str, np.ndarray]) -> list[float]:
    values = outputs.get("outputs")
    if values is None:
        raise ServingError("INVALID_ARGUMENT", "regression signature has no outputs Tensor")
    flat = values.reshape(len(values), -1)
    if flat.shape[1] != 1:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Expected output Tensor shape to be [batch_size] or [batch_size, 1], "
            f"got {list(values.shape)}",
        )
    return [float(v) for v in flat[:, 0]]
