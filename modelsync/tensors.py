"""numpy arrays <-> ``tensorflow.TensorProto`` and SignatureDefs -> :class:`Signature`,
without TensorFlow (the messages come from :func:`modelsync.protos.serving_protos`, or are
TensorFlow's own ``tensor_pb2.TensorProto``: only fields and the wire format are used).

Three writers, one per way TensorFlow writes a tensor:

- :func:`as_proto_field` — every value in its typed field (``float_val``, ``int_val``, ...), as
  ``Tensor::AsProtoField`` (tensorflow/core/framework/tensor.cc). TF Serving answers Predict
  this way by default (``kAsProtoField``, "for backward compatibility", in
  tensorflow_serving/model_servers/server_core.h; tensorflow_serving/servables/tensorflow/
  predict_util.cc ``PostProcessPredictionResult``): clients that read typed fields only (an
  Elasticsearch rescore plugin, for one) need it. The compatible model server answers with it.
- :func:`as_proto_tensor_content` — every value packed in ``tensor_content``, strings too, as
  ``Tensor::AsProtoTensorContent``: TF Serving's answers under
  ``--enable_serialization_as_tensor_content``.
- :func:`fill` — what ``tf.make_tensor_proto`` writes for a client's request: numbers in
  ``tensor_content``, strings in ``string_val``.

:func:`read` takes any of them (and what TensorFlow writes). Shared by the gateway, the config
manager's validation, the Predict client and the compatible model server.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

STRING = 7  # DT_STRING


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


# The typed TensorProto field each DataType's values go in (numbers from
# tensorflow/core/framework/types.proto), as Tensor::AsProtoField writes them
# (tensorflow/core/framework/tensor.cc, ProtoHelper<T>::Fill): small integers and the quantized
# types widen into int_val; half and bfloat16 go into half_val as their 16-bit patterns;
# complex values into scomplex_val/dcomplex_val as (real, imaginary) pairs; each float8 value is
# one byte of float8_val. DT_RESOURCE and DT_VARIANT have no numpy form.
VALUE_FIELDS: dict[int, str] = {
    1: "float_val",  # float32
    2: "double_val",  # float64
    3: "int_val",  # int32
    4: "int_val",  # uint8
    5: "int_val",  # int16
    6: "int_val",  # int8
    7: "string_val",  # string
    8: "scomplex_val",  # complex64
    9: "int64_val",  # int64
    10: "bool_val",  # bool
    11: "int_val",  # qint8
    12: "int_val",  # quint8
    13: "int_val",  # qint32
    14: "half_val",  # bfloat16
    15: "int_val",  # qint16
    16: "int_val",  # quint16
    17: "int_val",  # uint16
    18: "dcomplex_val",  # complex128
    19: "half_val",  # float16 (half)
    22: "uint32_val",  # uint32
    23: "uint64_val",  # uint64
    24: "float8_val",  # float8_e5m2
    25: "float8_val",  # float8_e4m3fn
    26: "float8_val",  # float8_e4m3fnuz
    27: "float8_val",  # float8_e4m3b11fnuz
    28: "float8_val",  # float8_e5m2fnuz
    29: "int_val",  # int4
    30: "int_val",  # uint4
}

# numpy's name of each DataType (the ml_dtypes names TensorFlow uses for bfloat16, float8, int4;
# the quantized types are TensorFlow's one-field structured dtypes, named by their field)
_NUMPY_NAMES: dict[str, int] = {
    "float32": 1,
    "float64": 2,
    "int32": 3,
    "uint8": 4,
    "int16": 5,
    "int8": 6,
    "complex64": 8,
    "int64": 9,
    "bool": 10,
    "qint8": 11,
    "quint8": 12,
    "qint32": 13,
    "bfloat16": 14,
    "qint16": 15,
    "quint16": 16,
    "uint16": 17,
    "complex128": 18,
    "float16": 19,
    "uint32": 22,
    "uint64": 23,
    "float8_e5m2": 24,
    "float8_e4m3fn": 25,
    "float8_e4m3fnuz": 26,
    "float8_e4m3b11fnuz": 27,
    "float8_e5m2fnuz": 28,
    "int4": 29,
    "uint4": 30,
}
_NAMES = {num: name for name, num in _NUMPY_NAMES.items()}
_OTHER = {20: "resource", 21: "variant"}

# The DataTypes the gateway writes as JSON: number -> (name, typed field)
DATA_TYPES: dict[int, tuple[str, str]] = {
    num: ("string" if num == STRING else _NAMES[num], VALUE_FIELDS[num])
    for num in (1, 2, 3, 4, 5, 6, 7, 9, 10, 17, 19, 22, 23)
}


class TensorError(ValueError):
    """A tensor that cannot be read as an array (or written from one)."""


def dtype_name(number: int) -> str:
    if number in DATA_TYPES:
        return DATA_TYPES[number][0]
    return _NAMES.get(number) or _OTHER.get(number, f"dtype {number}")


@functools.lru_cache(maxsize=256)
def data_type(dtype: np.dtype[Any]) -> int:
    """The DataType number of a numpy dtype (strings: bytes, str or object arrays)."""
    if dtype.kind in "OSU":
        return STRING
    key = dtype.names[0] if dtype.names and len(dtype.names) == 1 else dtype.name
    if key not in _NUMPY_NAMES:
        raise TensorError(f"numpy dtype {dtype} has no TensorFlow DataType")
    return _NUMPY_NAMES[key]


def _header(proto: Any, number: int, shape: tuple[int, ...]) -> None:
    """A cleared proto with its dtype and shape (a scalar has no dims)."""
    proto.Clear()
    proto.dtype = number
    proto.tensor_shape.SetInParent()
    for n in shape:
        proto.tensor_shape.dim.add().size = n


def _little_endian_bytes(arr: Array) -> bytes:
    if sys.byteorder != "little" or arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return np.ascontiguousarray(arr).tobytes()


def _bytes_values(arr: Array) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode() for v in arr.reshape(-1).tolist()]


def fill(proto: Any, arr: Array) -> None:
    """Write ``arr`` into ``proto`` as ``tf.make_tensor_proto`` writes a request: numbers in
    ``tensor_content`` (little-endian), strings in ``string_val``."""
    number = data_type(arr.dtype)
    _header(proto, number, arr.shape)
    if number == STRING:
        proto.string_val.extend(_bytes_values(arr))
    elif arr.size:
        proto.tensor_content = _little_endian_bytes(arr)


# --- Tensor::AsProtoField --------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@functools.lru_cache(maxsize=64)
def _packed_tag(descriptor: Any, field: str) -> bytes:
    return _varint(descriptor.fields_by_name[field].number << 3 | 2)  # wire type 2: packed


def _merge_packed(proto: Any, field: str, little_endian: bytes) -> None:
    """Append fixed-width values to a repeated field in one parse of their wire form (a packed
    float/double field is the values' little-endian bytes): no Python object per value."""
    tag = _packed_tag(proto.DESCRIPTOR, field)
    proto.MergeFromString(tag + _varint(len(little_endian)) + little_endian)


def _flat(arr: Array) -> Array:
    return np.ascontiguousarray(arr).reshape(-1)


def _ints(arr: Array) -> list[int]:
    """Values that go into int_val (int32): the quantized types' field, int4 widened."""
    if arr.dtype.names:
        arr = arr[arr.dtype.names[0]]
    if arr.dtype.kind not in "iub":  # int4/uint4 (ml_dtypes)
        arr = arr.astype(np.int32)
    return list(_flat(arr).tolist())


def _write_fixed(field: str, little_endian: str) -> Callable[[Any, Array], None]:
    def write(proto: Any, arr: Array) -> None:
        _merge_packed(proto, field, _little_endian_bytes(arr.astype(little_endian, copy=False)))

    return write


def _write_list(field: str) -> Callable[[Any, Array], None]:
    def write(proto: Any, arr: Array) -> None:
        getattr(proto, field).extend(_flat(arr).tolist())

    return write


def _write_ints(proto: Any, arr: Array) -> None:
    proto.int_val.extend(_ints(arr))


def _write_half(proto: Any, arr: Array) -> None:
    native = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    proto.half_val.extend(_flat(native).view(np.uint16).tolist())


def _write_float8(proto: Any, arr: Array) -> None:
    proto.float8_val = _flat(arr).view(np.uint8).tobytes()


def _write_strings(proto: Any, arr: Array) -> None:
    proto.string_val.extend(_bytes_values(arr))


_FIELD_WRITERS: dict[str, Callable[[Any, Array], None]] = {
    "float_val": _write_fixed("float_val", "<f4"),
    "double_val": _write_fixed("double_val", "<f8"),
    "scomplex_val": _write_fixed("scomplex_val", "<c8"),  # (re, im) float32 pairs
    "dcomplex_val": _write_fixed("dcomplex_val", "<c16"),
    "int_val": _write_ints,
    "int64_val": _write_list("int64_val"),
    "uint32_val": _write_list("uint32_val"),
    "uint64_val": _write_list("uint64_val"),
    "bool_val": _write_list("bool_val"),
    "half_val": _write_half,
    "float8_val": _write_float8,
    "string_val": _write_strings,
}


def as_proto_field(proto: Any, arr: Array) -> None:
    """Write ``arr`` into ``proto`` as TensorFlow's ``Tensor::AsProtoField``
    (tensorflow/core/framework/tensor.cc): the proto cleared, ``dtype`` and ``tensor_shape``
    always set (no dims for a scalar), then every value in the typed field of
    :data:`VALUE_FIELDS` — none for a tensor of 0 elements — and never ``tensor_content``."""
    number = data_type(arr.dtype)
    _header(proto, number, arr.shape)
    if arr.size:
        _FIELD_WRITERS[VALUE_FIELDS[number]](proto, arr)


# --- Tensor::AsProtoTensorContent -------------------------------------------------------------


def encode_string_list(values: list[bytes]) -> bytes:
    """Strings as TensorFlow packs them in tensor_content (tensorflow/core/platform/
    tensor_coding.cc ``EncodeStringList``): every length as a varint32, then every string."""
    return b"".join([_varint(len(v)) for v in values] + values)


def decode_string_list(data: bytes, n: int) -> list[bytes]:
    """The inverse of :func:`encode_string_list` for ``n`` strings (``DecodeStringList``)."""
    lengths, pos = [], 0
    for _ in range(n):
        value, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 28:
                raise TensorError("tensor_content is not a list of strings")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        lengths.append(value)
    if pos + sum(lengths) != len(data):
        raise TensorError("tensor_content is not a list of strings")
    out = []
    for length in lengths:
        out.append(data[pos : pos + length])
        pos += length
    return out


def as_proto_tensor_content(proto: Any, arr: Array) -> None:
    """Write ``arr`` into ``proto`` as TensorFlow's ``Tensor::AsProtoTensorContent``: every
    value in ``tensor_content`` (numbers little-endian, strings by
    :func:`encode_string_list`), nothing for a tensor of 0 elements."""
    number = data_type(arr.dtype)
    _header(proto, number, arr.shape)
    if not arr.size:
        return
    if number == STRING:
        proto.tensor_content = encode_string_list(_bytes_values(arr))
    else:
        proto.tensor_content = _little_endian_bytes(arr)


# --- reading ----------------------------------------------------------------------------------


def _typed_values(proto: Any, name: str, field: str) -> Array:
    values = getattr(proto, field)
    if name == "string":
        out: Array = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    if name == "float16":
        return np.array(values, dtype=np.uint16).view(np.float16)
    return np.array(values, dtype=name)


def read(proto: Any) -> Array:
    """A TensorProto of :data:`DATA_TYPES` as an array: ``tensor_content`` or the typed value
    field, where fewer values than elements repeat the last one (as TensorFlow reads them)."""
    if proto.dtype not in DATA_TYPES:
        raise TensorError(f"output of {dtype_name(proto.dtype)} cannot be written as JSON")
    name, field = DATA_TYPES[proto.dtype]
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    size = int(np.prod(shape)) if shape else 1
    if proto.tensor_content and size:
        if name == "string":
            strings: Array = np.empty(size, dtype=object)
            strings[:] = decode_string_list(proto.tensor_content, size)
            return strings.reshape(shape)
        flat = np.frombuffer(proto.tensor_content, dtype=np.dtype(name).newbyteorder("<"))
        if flat.size != size:
            raise TensorError(f"tensor_content has {flat.size} values for shape {list(shape)}")
        return flat.reshape(shape)
    out = _typed_values(proto, name, field)
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
