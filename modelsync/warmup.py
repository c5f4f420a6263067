"""TF Serving warmup files from JSON requests (pure; no TensorFlow, no I/O).

``modelsync publish --warmup FILE.jsonl`` writes ``assets.extra/tf_serving_warmup_requests``,
the file TF Serving replays while it loads a version: a TFRecord (``modelsync.tfrecord``) of
serialized ``tensorflow.serving.PredictionLog``, each a ``predict_log`` with one
``PredictRequest`` (messages from ``modelsync.protos.serving_protos``).

Each non-blank line of the JSONL file is one request in TF Serving's REST forms
(``tensorflow_serving/util/json_tensor.cc``), checked against the SavedModel's signature:

* row form ``{"instances": [...]}``: a list of values of the single input, or of objects with
  exactly one key per input; the rows are stacked along a new first dimension and must all
  have the same shape;
* columnar form ``{"inputs": ...}``: the single input's value, or an object naming each input;
* optional ``"signature_name"`` (default ``serving_default``);
* values as TF Serving reads them: numbers for float inputs, integers (in range) for integer
  inputs, ``true``/``false`` for bool, strings or ``{"b64": "..."}`` for string inputs.

A line that is not such a request raises :class:`WarmupError` naming its line number; at most
1,000 requests (TF Serving refuses to load a version whose file has more).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from modelsync.tensors import Array, Signature, TensorSpec, fill
from modelsync.tfrecord import write_records

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_REQUESTS = 1000  # TF Serving's WarmupConsts::kMaxNumRecords
DEFAULT_SIGNATURE = "serving_default"
_INT_RANGES = {
    name: (int(np.iinfo(name).min), int(np.iinfo(name).max))
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
}
_FLOATS = ("float16", "float32", "float64")


class WarmupError(ValueError):
    """A warmup request that cannot be written; the message names the line."""


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _leaf(value: Any, dtype: str, where: str) -> Any:
    if dtype in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WarmupError(f"{where}: {json.dumps(value)} is not a number ({dtype})")
        return float(value)
    if dtype in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise WarmupError(f"{where}: {json.dumps(value)} is not an integer ({dtype})")
        low, high = _INT_RANGES[dtype]
        if not low <= value <= high:
            raise WarmupError(f"{where}: {value} is out of the range of {dtype}")
        return value
    if dtype == "bool":
        if not isinstance(value, bool):
            raise WarmupError(f"{where}: {json.dumps(value)} is not true or false (bool)")
        return value
    if dtype == "string":
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value) and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except binascii.Error:
                raise WarmupError(f"{where}: bad base64 in {json.dumps(value)}") from None
        raise WarmupError(f'{where}: {json.dumps(value)} is not a string or {{"b64": ...}}')
    raise WarmupError(f"{where}: inputs of {dtype} cannot be written from JSON")


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    shapes = {_shape(v, where) for v in value}
    if len(shapes) != 1:
        raise WarmupError(f"{where}: a ragged list (its elements have different shapes)")
    return (len(value), *shapes.pop())


def _flatten(value: Any) -> Iterable[Any]:
    if isinstance(value, list):
        for v in value:
            yield from _flatten(v)
    else:
        yield value


def to_array(value: Any, spec: TensorSpec, where: str) -> Array:
    """One input's JSON value as an array of the signature's dtype and a compatible shape."""
    shape = _shape(value, where)
    leaves = [_leaf(v, spec.dtype, where) for v in _flatten(value)]
    if spec.dtype == "string":
        arr: Array = np.empty(len(leaves), dtype=object)
        arr[:] = leaves
        arr = arr.reshape(shape)
    else:
        arr = np.array(leaves, dtype=spec.dtype).reshape(shape)
    if spec.shape is not None:
        want = list(spec.shape)
        if len(want) != len(shape) or any(
            w not in (-1, s) for w, s in zip(want, shape, strict=True)
        ):
            shown = ",".join("?" if w == -1 else str(w) for w in want)
            raise WarmupError(
                f"{where}: shape {list(shape)} does not fit the signature's [{shown}]"
            )
    return arr


def _named(obj: dict[str, Any], sig: Signature, where: str) -> None:
    unknown = sorted(set(obj) - set(sig.inputs))
    missing = sorted(set(sig.inputs) - set(obj))
    if unknown or missing:
        have = ", ".join(sig.inputs) or "none"
        parts = ([f"unknown input(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"missing input(s) {', '.join(missing)}"] if missing else []
        )
        raise WarmupError(f"{where}: {'; '.join(parts)} (the signature has {have})")


def request_inputs(doc: Any, sig: Signature, where: str) -> dict[str, Array]:
    """The inputs of one REST-form request (``instances`` or ``inputs``) as arrays."""
    if not isinstance(doc, dict):
        raise WarmupError(f"{where}: a request must be a JSON object")
    extra = sorted(set(doc) - {"instances", "inputs", "signature_name"})
    if extra:
        raise WarmupError(f"{where}: unknown key(s) {', '.join(extra)}")
    if ("instances" in doc) == ("inputs" in doc):
        raise WarmupError(f"{where}: want exactly one of 'instances' (rows) and 'inputs' (columns)")
    single = next(iter(sig.inputs)) if len(sig.inputs) == 1 else None
    if "inputs" in doc:
        cols = doc["inputs"]
        if isinstance(cols, dict) and not _is_b64(cols):
            _named(cols, sig, where)
            return {
                k: to_array(v, sig.inputs[k], f"{where}: input {k}")
                for k, v in sorted(cols.items())
            }
        if single is None:
            raise WarmupError(
                f"{where}: 'inputs' must be an object naming each input of a "
                f"signature with {len(sig.inputs)} inputs"
            )
        return {single: to_array(cols, sig.inputs[single], f"{where}: input {single}")}
    rows = doc["instances"]
    if not isinstance(rows, list) or not rows:
        raise WarmupError(f"{where}: 'instances' must be a non-empty list")
    objects = [isinstance(r, dict) and not _is_b64(r) for r in rows]
    if any(objects) and not all(objects):
        raise WarmupError(f"{where}: 'instances' mixes objects and plain values")
    if all(objects):
        for i, r in enumerate(rows):
            _named(r, sig, f"{where}: instance {i}")
        columns = {k: [r[k] for r in rows] for k in sig.inputs}
    elif single is None:
        raise WarmupError(
            f"{where}: 'instances' must be objects naming each input of a "
            f"signature with {len(sig.inputs)} inputs"
        )
    else:
        columns = {single: rows}
    return {
        k: to_array(v, sig.inputs[k], f"{where}: input {k}") for k, v in sorted(columns.items())
    }


def prediction_log(doc: Any, signatures: Mapping[str, Signature], model: str, where: str) -> Any:
    """One REST-form request -> a ``tensorflow.serving.PredictionLog`` with a predict_log."""
    from modelsync.protos import serving_protos

    name = doc.get("signature_name", "") if isinstance(doc, dict) else ""
    if not isinstance(name, str):
        raise WarmupError(f"{where}: 'signature_name' must be a string")
    sig = signatures.get(name or DEFAULT_SIGNATURE)
    if sig is None:
        raise WarmupError(
            f"{where}: the SavedModel has no signature "
            f"{name or DEFAULT_SIGNATURE!r} (it has "
            f"{', '.join(sorted(signatures)) or 'none'})"
        )
    inputs = request_inputs(doc, sig, where)
    log = serving_protos().PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = model  # TF Serving's warmup ignores it: any name would do
    if name:
        request.model_spec.signature_name = name
    for key, arr in inputs.items():
        fill(request.inputs[key], arr)
    return log


def prediction_logs(
    lines: Iterable[str], signatures: Mapping[str, Signature], model: str, source: str = "warmup"
) -> list[Any]:
    """The PredictionLogs of JSONL ``lines`` (blank lines skipped); WarmupError names the line
    (``source`` line N) of the first bad one."""
    logs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise WarmupError(f"{where}: not JSON: {exc}") from None
        logs.append(prediction_log(doc, signatures, model, where))
        if len(logs) > MAX_REQUESTS:
            raise WarmupError(
                f"{where}: more than {MAX_REQUESTS} requests (TF Serving refuses "
                "to load a version whose warmup file has more)"
            )
    if not logs:
        raise WarmupError(f"{source}: no requests")
    return logs


def warmup_file_bytes(
    lines: Iterable[str], signatures: Mapping[str, Signature], model: str, source: str = "warmup"
) -> bytes:
    """The contents of ``assets.extra/tf_serving_warmup_requests`` for JSONL ``lines``."""
    return write_records(
        log.SerializeToString() for log in prediction_logs(lines, signatures, model, source)
    )
