"""numpy arrays <-> ``tensorflow.TensorProto`` and SignatureDefs -> :class:`Signature`,
without TensorFlow (the messages come from :func:`modelsync.protos.serving_protos`). Shared by
the gateway, the config manager's validation and the Predict client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class TensorSpec:
    """``dtype`` is one of :data:`DATA_TYPES`' names (or TensorFlow's name of another one);
    ``shape`` uses -1 for an unknown size, ``None`` for an unknown rank."""

    dtype: str
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Signature:
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]


# tensorflow/core/framework/types.proto: DataType number -> (gateway name, TensorProto field)
DATA_TYPES: dict[int, tuple[str, str]] = {
    1: ("float32", "float_val"),
    2: ("float64", "double_val"),
    3: ("int32", "int_val"),
    4: ("uint8", "int_val"),
    5: ("int16", "int_val"),
    6: ("int8", "int_val"),
    7: ("string", "string_val"),
    9: ("int64", "int64_val"),
    10: ("bool", "bool_val"),
    17: ("uint16", "int_val"),
    19: ("float16", "half_val"),
    22: ("uint32", "uint32_val"),
    23: ("uint64", "uint64_val"),
}
_ENUM = {name: num for num, (name, _field) in DATA_TYPES.items()}
_OTHER = {8: "complex64", 14: "bfloat16", 18: "complex128", 20: "resource", 21: "variant"}


class TensorError(ValueError):
    """A tensor that cannot be read as an array (or written from one)."""


def dtype_name(number: int) -> str:
    if number in DATA_TYPES:
        return DATA_TYPES[number][0]
    return _OTHER.get(number, f"dtype {number}")


def fill(proto: Any, arr: Array) -> None:
    """Write ``arr`` (a dtype of :data:`DATA_TYPES`) into an empty TensorProto."""
    name = "string" if arr.dtype.kind in "OSU" else arr.dtype.name
    proto.dtype = _ENUM[name]
    for n in arr.shape:
        proto.tensor_shape.dim.add().size = n
    if name == "string":
        proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode() for v in arr.reshape(-1).tolist()
        )
    else:
        proto.tensor_content = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def read(proto: Any) -> Array:
    """A TensorProto as an array: ``tensor_content`` or the typed value field, where fewer
    values than elements repeat the last one (as TensorFlow reads them)."""
    if proto.dtype not in DATA_TYPES:
        raise TensorError(f"output of {dtype_name(proto.dtype)} cannot be written as JSON")
    name, field = DATA_TYPES[proto.dtype]
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    size = int(np.prod(shape)) if shape else 1
    if name != "string" and proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype=np.dtype(name).newbyteorder("<"))
        if flat.size != size:
            raise TensorError(f"tensor_content has {flat.size} values for shape {list(shape)}")
        return flat.reshape(shape)
    values = list(getattr(proto, field))
    if name == "float16":
        out: Array = np.array(values, dtype=np.uint16).view(np.float16)
    elif name == "string":
        out = np.empty(len(values), dtype=object)
        out[:] = values
    else:
        out = np.array(values, dtype=name)
    if out.size < size:
        pad = out[-1] if out.size else (b"" if name == "string" else 0)
        out = np.concatenate([out, np.full(size - out.size, pad, dtype=out.dtype)])
    return out[:size].reshape(shape)


def _spec(info: Any) -> TensorSpec:
    if info.WhichOneof("encoding") != "name":
        return TensorSpec(f"{info.WhichOneof('encoding')} tensor", None)
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    return TensorSpec(dtype_name(info.dtype), dims)


def signatures(sig_map: Any) -> dict[str, Signature]:
    """``tensorflow.serving.SignatureDefMap`` -> {signature name: Signature}."""
    return {
        name: Signature(
            {k: _spec(v) for k, v in sorted(sd.inputs.items())},
            {k: _spec(v) for k, v in sorted(sd.outputs.items())},
        )
        for name, sd in sig_map.signature_def.items()
    }
