"""Caller's JSON <-> input and output tensors as numpy arrays (pure: no I/O, no protos).

    sig = Signature({"x": TensorSpec("float32", (-1,)), "n": TensorSpec("int64", (-1,))},
                    {"y": TensorSpec("float32", (-1,))})
    fmt, inputs = mlflow_inputs(parse_json(raw), sig)     # raises BadInput (-> HTTP 400)
    doc = mlflow_predictions({"y": np.array([3.0])}, fmt)  # {"predictions": [3.0]}

Every format, shape and dtype check is here, before anything reaches TF Serving; each message
names the input. What MLflow and ML-Kraken send and answer: gateway/README.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelsync.layout import is_model_name, is_version
from modelsync.tensors import Array, Signature, TensorSpec

Inputs = dict[str, Array]

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
NUMERIC = (
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
)
DTYPES = (*NUMERIC, "bool", "string")


class BadInput(ValueError):
    """The request cannot become the signature's tensors (HTTP 400); the message says why."""


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise BadInput("the body is not UTF-8 text") from None
    except ValueError as exc:
        raise BadInput(f"the body is not valid JSON: {exc}") from None


# --- values -> arrays ----------------------------------------------------------------------


def _b64(value: dict[str, Any], name: str) -> bytes:
    data = value.get("b64")
    if set(value) != {"b64"} or not isinstance(data, str):
        raise BadInput(f'input {name!r}: expected strings or {{"b64": ...}}, got an object')
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f'input {name!r}: invalid base64 in {{"b64": ...}}') from None


def _strings(value: Any, name: str) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogatepass")
    if isinstance(value, dict):
        return _b64(value, name)
    if isinstance(value, list):
        return [_strings(v, name) for v in value]
    raise BadInput(f"input {name!r}: expected strings, got {_kind(value)}")


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _shape_of(value: Any, name: str) -> tuple[int, ...]:
    """Shape of nested lists; BadInput when ragged."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    inner = [_shape_of(v, name) for v in value]
    if any(s != inner[0] for s in inner):
        raise BadInput(f"input {name!r}: ragged nested lists (rows of different shapes)")
    return (len(value), *inner[0])


def _string_array(value: Any, name: str) -> Array:
    shape = _shape_of(value, name)
    flat: Any = _strings(value, name)
    for _ in range(len(shape) - 1):
        flat = [x for row in flat for x in row]
    arr: Array = np.empty(shape, dtype=object)
    arr.reshape(-1)[:] = flat if shape else [flat]
    return arr


def _numeric_array(value: Any, dtype: str, name: str) -> Array:
    try:
        raw = np.asarray(value)
    except (ValueError, OverflowError):
        raise BadInput(f"input {name!r}: ragged nested lists (rows of different shapes)") from None
    kind = raw.dtype.kind
    if raw.size == 0 and kind == "f":
        return raw.astype(dtype)
    if kind in "US":
        raise BadInput(f"input {name!r}: expected {dtype} numbers, got a string")
    if kind == "O":
        raise BadInput(
            f"input {name!r}: expected {dtype} numbers, got null, an object, a list "
            "mixed with numbers, or a number out of range"
        )
    if dtype == "bool":
        if kind != "b":
            raise BadInput(f"input {name!r}: expected booleans (true/false)")
        return raw
    if kind == "b":
        raise BadInput(f"input {name!r}: expected {dtype} numbers, got booleans")
    target = np.dtype(dtype)
    if target.kind in "iu":
        if kind == "f" and (not np.all(np.isfinite(raw)) or not np.all(raw == np.floor(raw))):
            raise BadInput(f"input {name!r}: expected {dtype} integers, got a fraction")
        info = np.iinfo(target)
        if raw.size and (raw.min() < info.min or raw.max() > info.max):
            raise BadInput(f"input {name!r}: a value is out of the range of {dtype}")
        return raw.astype(target)
    with np.errstate(over="ignore"):
        out = raw.astype(target)
    if target.itemsize < 8 and bool(np.any(np.isinf(out) & np.isfinite(raw))):
        raise BadInput(f"input {name!r}: a value is out of the range of {dtype}")
    return out


def to_array(value: Any, spec: TensorSpec, name: str) -> Array:
    """One input's JSON value (a scalar or nested lists) as an array of ``spec``'s dtype and a
    shape compatible with ``spec.shape``."""
    if spec.dtype not in DTYPES:
        raise BadInput(f"input {name!r}: its dtype {spec.dtype} is not supported by the gateway")
    if isinstance(value, dict) and not (spec.dtype == "string" and set(value) == {"b64"}):
        raise BadInput(f"input {name!r}: expected a value or a list, got an object")
    if spec.dtype == "string":
        arr = _string_array(value, name)
    else:
        arr = _numeric_array(value, spec.dtype, name)
    if spec.shape is not None:
        want = list(spec.shape)
        if arr.ndim != len(want) or any(
            w >= 0 and w != g for w, g in zip(want, arr.shape, strict=True)
        ):
            shown = [None if w < 0 else w for w in want]
            raise BadInput(
                f"input {name!r}: shape {list(arr.shape)} does not fit the signature's {shown}"
            )
    return arr


# --- request formats -----------------------------------------------------------------------


def _columns_to_inputs(columns: Mapping[str, Any], sig: Signature) -> Inputs:
    missing = [f"missing input {k!r}" for k in sig.inputs if k not in columns]
    extra = [f"unknown input {k!r}" for k in columns if k not in sig.inputs]
    if missing or extra:
        raise BadInput(f"{(missing + extra)[0]} (the signature's inputs are {sorted(sig.inputs)})")
    return {k: to_array(columns[k], sig.inputs[k], k) for k in sig.inputs}


def _records(rows: Any, sig: Signature, what: str) -> Inputs:
    """Row form: a non-empty list of objects of named inputs, or of bare values for a
    single-input signature."""
    if not isinstance(rows, list) or not rows:
        raise BadInput(
            f"{what}: expected a list of rows" if not isinstance(rows, list) else f"{what}: no rows"
        )
    bare_b64 = (
        len(sig.inputs) == 1
        and "b64" not in sig.inputs
        and all(isinstance(r, dict) and set(r) == {"b64"} for r in rows)
    )
    if all(isinstance(r, dict) for r in rows) and not bare_b64:
        names = list(sig.inputs)
        for i, row in enumerate(rows):
            bad = [f"is missing input {k!r}" for k in names if k not in row] + [
                f"has unknown input {k!r}" for k in row if k not in sig.inputs
            ]
            if bad:
                raise BadInput(
                    f"{what}: row {i} {bad[0]} (the signature's inputs are {sorted(names)})"
                )
        return _columns_to_inputs({k: [r[k] for r in rows] for k in names}, sig)
    if any(isinstance(r, dict) for r in rows) and not bare_b64:
        raise BadInput(f"{what}: rows mix objects and bare values")
    if len(sig.inputs) != 1:
        raise BadInput(f"{what}: each row must be an object naming the inputs {sorted(sig.inputs)}")
    (name,) = sig.inputs
    return {name: to_array(rows, sig.inputs[name], name)}


def records_inputs(rows: list[Any], sig: Signature) -> Inputs:
    """Rows (objects of named inputs, or bare values of a single input: MLflow's
    ``dataframe_records``, a job's rows) as the signature's arrays, one row each."""
    return _records(rows, sig, "rows")


def _split(doc: Any, sig: Signature) -> Inputs:
    if not isinstance(doc, dict):
        raise BadInput("dataframe_split: expected an object with 'columns' and 'data'")
    unknown = sorted(set(doc) - {"columns", "data", "index"})
    if unknown:
        raise BadInput(
            f"dataframe_split: unexpected key {unknown[0]!r} (allowed: columns, data, index)"
        )
    columns, data = doc.get("columns"), doc.get("data")
    if (
        not isinstance(columns, list)
        or not all(isinstance(c, str) for c in columns)
        or len(set(columns)) != len(columns)
    ):
        raise BadInput("dataframe_split: 'columns' must be a list of input names, each once")
    if not isinstance(data, list) or not data:
        raise BadInput("dataframe_split: 'data' must be a non-empty list of rows")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise BadInput(
                f"dataframe_split: row {i} must be a list of {len(columns)} values, one per column"
            )
    index = doc.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise BadInput("dataframe_split: 'index' must be a list with one entry per row")
    return _columns_to_inputs({c: [row[j] for row in data] for j, c in enumerate(columns)}, sig)


def _columnar(doc: Any, sig: Signature, what: str) -> Inputs:
    """Columnar form: an object of named inputs, or a bare value for a single input."""
    if isinstance(doc, dict) and not (
        len(sig.inputs) == 1 and set(doc) == {"b64"} and "b64" not in sig.inputs
    ):
        return _columns_to_inputs(doc, sig)
    if len(sig.inputs) != 1:
        raise BadInput(f"{what}: expected an object naming the inputs {sorted(sig.inputs)}")
    (name,) = sig.inputs
    return {name: to_array(doc, sig.inputs[name], name)}


def mlflow_inputs(body: Any, sig: Signature) -> tuple[str, Inputs]:
    """An MLflow scoring body -> (its format, the input arrays). Other top-level keys
    (``params``...) are ignored, as MLflow's scoring server does."""
    need = f"the body must be a JSON object with exactly one of the fields {list(MLFLOW_FORMATS)}"
    if not isinstance(body, dict):
        raise BadInput(f"{need}; received {_kind(body)}")
    found = [k for k in MLFLOW_FORMATS if k in body]
    if len(found) != 1:
        raise BadInput(f"{need}; received the fields {sorted(body)[:10]}")
    fmt = found[0]
    if fmt == "dataframe_split":
        return fmt, _split(body[fmt], sig)
    if fmt == "inputs":
        return fmt, _columnar(body[fmt], sig, fmt)
    return fmt, _records(body[fmt], sig, fmt)


@dataclass(frozen=True)
class KrakenRequest:
    model: str
    version: int | None
    model_data: Any
    signature: str = ""


def kraken_request(body: Any) -> KrakenRequest:
    """``{"modelData": ..., "metaData": {"modelId": "m", "modelVersion": 3}}`` (and, a gateway
    extension, ``"signatureName"``)."""
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object with 'modelData' and 'metaData'")
    meta = body.get("metaData")
    if not isinstance(meta, dict):
        raise BadInput("'metaData' must be an object with 'modelId'")
    model = meta.get("modelId")
    if not isinstance(model, str) or not is_model_name(model):
        raise BadInput("'metaData.modelId' must be a model name")
    version = meta.get("modelVersion")
    if version is not None and not is_version(version):
        raise BadInput("'metaData.modelVersion' must be a positive integer or absent")
    signature = meta.get("signatureName", "")
    if not isinstance(signature, str):
        raise BadInput("'metaData.signatureName' must be a string")
    if "modelData" not in body:
        raise BadInput("'modelData' is missing")
    return KrakenRequest(model, version, body["modelData"], signature)


def kraken_inputs(model_data: Any, sig: Signature) -> Inputs:
    """modelData: an object of named inputs, a list of row objects, or a list of rows of a
    single-input model."""
    if isinstance(model_data, list) and model_data and all(isinstance(r, dict) for r in model_data):
        return _records(model_data, sig, "modelData")
    return _columnar(model_data, sig, "modelData")


# --- outputs -> JSON -----------------------------------------------------------------------


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


# JSON has no NaN or infinities. TF Serving's REST API writes them as the bare tokens NaN,
# Infinity and -Infinity (WriteDecimal in tensorflow_serving/util/json_tensor.cc), which strict
# parsers (JavaScript's JSON.parse, Go, Java) refuse; the gateway's answers (MLflow, ML-Kraken:
# ``answer_values``) carry the same three words as JSON strings instead: valid JSON, nothing
# lost, and float("NaN"), float("-Infinity"), Number("Infinity") read them back. ``jsonable``
# keeps them floats (a job's row with one is that row's error: ``jobs.scoring``).
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _non_finite_as_text(values: Any) -> Any:
    if isinstance(values, list):
        return [_non_finite_as_text(v) for v in values]
    if isinstance(values, float) and not math.isfinite(values):
        return NON_FINITE[repr(values)]
    return values


def jsonable(arr: Array) -> Any:
    return _decode(arr.tolist()) if arr.dtype.kind in "OS" else arr.tolist()


def answer_values(arr: Array) -> Any:
    """``jsonable``, with non-finite floats as TF Serving's words (valid JSON)."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return _non_finite_as_text(arr.tolist())
    return jsonable(arr)


def _per_row(outputs: Mapping[str, Array]) -> list[dict[str, Any]] | None:
    """One object per row, if the outputs all have the same number of rows."""
    rows = {a.shape[0] if a.ndim else -1 for a in outputs.values()}
    if len(rows) != 1 or -1 in rows:
        return None
    cols = {k: answer_values(v) for k, v in outputs.items()}
    return [{k: cols[k][i] for k in cols} for i in range(rows.pop())]


def _mlflow_column(arr: Array) -> Any:
    # MLflow's TensorFlow flavour flattens [n, 1] outputs to [n] (mlflow/tensorflow _TF2Wrapper)
    return answer_values(arr.reshape(-1) if arr.ndim == 2 and arr.shape[1] == 1 else arr)


def mlflow_predictions(outputs: Mapping[str, Array], fmt: str) -> dict[str, Any]:
    """As MLflow's scoring server answers for a TensorFlow model: one output -> a list of
    per-row values; several -> a list of per-row objects for the DataFrame formats, an object
    of per-output lists for ``inputs`` and ``instances`` (the flavour returns a DataFrame, or a
    dict, and the server writes a DataFrame as records, a dict as it is)."""
    if len(outputs) == 1:
        return {"predictions": _mlflow_column(next(iter(outputs.values())))}
    if fmt.startswith("dataframe_"):
        flat = {
            k: (v.reshape(-1) if v.ndim == 2 and v.shape[1] == 1 else v) for k, v in outputs.items()
        }
        rows = _per_row(flat)
        if rows is not None:
            return {"predictions": rows}
    return {"predictions": {k: _mlflow_column(v) for k, v in outputs.items()}}


def kraken_results(outputs: Mapping[str, Array]) -> Any:
    """ML-Kraken's ``results``: one output -> its per-row values; several -> per-row objects
    (or an object of per-output values when their row counts differ)."""
    if len(outputs) == 1:
        return answer_values(next(iter(outputs.values())))
    rows = _per_row(outputs)
    return rows if rows is not None else {k: answer_values(v) for k, v in outputs.items()}
