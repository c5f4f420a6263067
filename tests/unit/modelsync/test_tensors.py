"""modelsync.tensors' writers against TensorFlow's own reader (``tf.io.parse_tensor`` runs the
C++ ``Tensor::FromProto`` that TF Serving's clients and TF Serving itself use) and the field
table of ``Tensor::AsProtoField`` (tensorflow/core/framework/tensor.cc)."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow.core.framework import tensor_pb2

from modelsync.protos import serving_protos
from modelsync.tensors import (
    TensorError,
    as_proto_field,
    as_proto_tensor_content,
    data_type,
    decode_string_list,
    encode_string_list,
    fill,
    read,
)

# numpy dtype (as TensorFlow's .numpy() gives it) -> (DataType, the typed field AsProtoField fills)
CASES: dict[str, tuple[Any, int, str]] = {
    "float32": (np.float32, 1, "float_val"),
    "float64": (np.float64, 2, "double_val"),
    "int32": (np.int32, 3, "int_val"),
    "uint8": (np.uint8, 4, "int_val"),
    "int16": (np.int16, 5, "int_val"),
    "int8": (np.int8, 6, "int_val"),
    "complex64": (np.complex64, 8, "scomplex_val"),
    "int64": (np.int64, 9, "int64_val"),
    "bool": (np.bool_, 10, "bool_val"),
    "qint8": (tf.qint8.as_numpy_dtype, 11, "int_val"),
    "quint8": (tf.quint8.as_numpy_dtype, 12, "int_val"),
    "qint32": (tf.qint32.as_numpy_dtype, 13, "int_val"),
    "bfloat16": (ml_dtypes.bfloat16, 14, "half_val"),
    "qint16": (tf.qint16.as_numpy_dtype, 15, "int_val"),
    "quint16": (tf.quint16.as_numpy_dtype, 16, "int_val"),
    "uint16": (np.uint16, 17, "int_val"),
    "complex128": (np.complex128, 18, "dcomplex_val"),
    "float16": (np.float16, 19, "half_val"),
    "uint32": (np.uint32, 22, "uint32_val"),
    "uint64": (np.uint64, 23, "uint64_val"),
    "float8_e5m2": (ml_dtypes.float8_e5m2, 24, "float8_val"),
    "float8_e4m3fn": (ml_dtypes.float8_e4m3fn, 25, "float8_val"),
    "float8_e4m3fnuz": (ml_dtypes.float8_e4m3fnuz, 26, "float8_val"),
    "float8_e4m3b11fnuz": (ml_dtypes.float8_e4m3b11fnuz, 27, "float8_val"),
    "float8_e5m2fnuz": (ml_dtypes.float8_e5m2fnuz, 28, "float8_val"),
    "int4": (ml_dtypes.int4, 29, "int_val"),
    "uint4": (ml_dtypes.uint4, 30, "int_val"),
}
SHAPES = [(), (0,), (3, 0), (1,), (2, 3), (2, 1, 2)]


def sample(dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Values 0, 1, 2, ... (negative where the dtype has them) of ``dtype`` in ``shape``."""
    n = int(np.prod(shape))
    values = [(i % 7) - 3 if i % 2 else i % 7 for i in range(n)]
    dt = np.dtype(dtype)
    if dt.names:  # TensorFlow's quantized types: one-field structured dtypes
        field = dt.fields[dt.names[0]][0]
        lo = 0 if field.kind == "u" else -3
        return np.array([(max(v, lo),) for v in values], dtype=dt).reshape(shape)
    if dt.kind == "b":
        return np.array([v > 0 for v in values], dtype=dt).reshape(shape)
    if dt.kind == "u" or dt.name == "uint4":
        values = [abs(v) for v in values]
    if dt.kind == "c":
        return (np.array(values) + 1j * np.array(values[::-1])).astype(dt).reshape(shape)
    return np.array(values).astype(dt).reshape(shape)


def tf_reads(proto: Any) -> np.ndarray:
    """What TensorFlow's C++ Tensor::FromProto makes of ``proto``'s wire bytes."""
    serialized = proto.SerializeToString()
    dtype = tf.dtypes.as_dtype(proto.dtype)
    return np.asarray(tf.io.parse_tensor(serialized, dtype).numpy())


def plain(arr: np.ndarray) -> np.ndarray:
    """Comparable values: the quantized types' field, float8/int4/bfloat16 widened."""
    if arr.dtype.names:
        arr = arr[arr.dtype.names[0]]
    if arr.dtype.kind == "V" or arr.dtype.name in ("bfloat16",) or "float8" in arr.dtype.name:
        return arr.astype(np.float64 if "float" in arr.dtype.name else np.int64)
    return arr


def new_proto(cls: Any = tensor_pb2.TensorProto) -> Any:
    return cls()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_as_proto_field_uses_only_the_typed_field(name: str, shape: tuple[int, ...]) -> None:
    dtype, number, field = CASES[name]
    arr = sample(dtype, shape)
    proto = new_proto()
    as_proto_field(proto, arr)
    assert proto.dtype == number
    assert proto.HasField("tensor_shape")  # always set, a scalar's too (no dims)
    assert tuple(d.size for d in proto.tensor_shape.dim) == shape
    assert not proto.tensor_content
    used = {f.name for f, _ in proto.ListFields()} - {"dtype", "tensor_shape"}
    assert used == ({field} if arr.size else set())
    values = getattr(proto, field)
    per_value = 2 if "complex" in field else 1
    assert len(values) == arr.size * per_value
    back = tf_reads(proto)
    assert back.shape == shape
    np.testing.assert_array_equal(plain(back), plain(arr))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_as_proto_tensor_content_packs_every_value(name: str, shape: tuple[int, ...]) -> None:
    dtype, number, _field = CASES[name]
    arr = sample(dtype, shape)
    proto = new_proto()
    as_proto_tensor_content(proto, arr)
    used = {f.name for f, _ in proto.ListFields()} - {"dtype", "tensor_shape"}
    assert used == ({"tensor_content"} if arr.size else set())
    assert proto.dtype == number
    np.testing.assert_array_equal(plain(tf_reads(proto)), plain(arr))


def test_values_that_carry_their_bits() -> None:
    """half and bfloat16 go as their 16-bit patterns in half_val (int32 field); NaN, infinities
    and -0.0 survive both ways."""
    halves = np.array([1.0, -0.0, np.inf, -np.inf, np.nan, 65504.0], dtype=np.float16)
    proto = new_proto()
    as_proto_field(proto, halves)
    assert list(proto.half_val) == halves.view(np.uint16).tolist()
    assert list(proto.half_val)[:2] == [0x3C00, 0x8000]
    back = tf_reads(proto)
    assert back.view(np.uint16).tolist() == halves.view(np.uint16).tolist()
    floats = np.array([np.nan, -0.0, np.inf, 1e-45, 3.4028235e38], dtype=np.float32)
    proto = new_proto()
    as_proto_field(proto, floats)
    assert np.array(proto.float_val, dtype=np.float32).view(np.uint32).tolist() == (
        floats.view(np.uint32).tolist()
    )
    bf = np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16)
    proto = new_proto()
    as_proto_field(proto, bf)
    assert list(proto.half_val) == [0x3FC0, 0xC000]


def test_complex_values_are_real_imaginary_pairs() -> None:
    proto = new_proto()
    as_proto_field(proto, np.array([1 + 2j, -3j], dtype=np.complex64))
    assert list(proto.scomplex_val) == [1.0, 2.0, 0.0, -3.0]


@pytest.mark.parametrize("shape", [(), (0,), (2,), (2, 2)], ids=str)
def test_strings_bytes_and_text(shape: tuple[int, ...]) -> None:
    values = [b"a", b"\xff\x00bin", "é".encode(), b""][: int(np.prod(shape))]
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    arr = arr.reshape(shape)
    for write in (as_proto_field, as_proto_tensor_content, fill):
        proto = new_proto()
        write(proto, arr)
        assert proto.dtype == 7
        assert tf_reads(proto).tolist() == arr.tolist()
        assert read(proto).tolist() == arr.tolist()
    proto = new_proto()
    as_proto_field(proto, arr)
    assert list(proto.string_val) == values and not proto.tensor_content
    proto = new_proto()
    as_proto_field(proto, np.array(["é", "b"]))  # numpy text: UTF-8
    assert list(proto.string_val) == ["é".encode(), b"b"]


def test_writes_into_any_tensor_proto_class() -> None:
    """The TF-free classes of modelsync.protos (the gateway's) and TensorFlow's own, and a
    TensorProto inside a response message, with anything already in it cleared."""
    cls = serving_protos().get("tensorflow.TensorProto")
    response = serving_protos().PredictResponse()
    arr = np.arange(4, dtype=np.float32).reshape(2, 2)
    for proto in (cls(), new_proto(), response.outputs["y"]):
        proto.tensor_content = b"stale"
        proto.float_val.append(9.0)
        as_proto_field(proto, arr)
        assert list(proto.float_val) == [0.0, 1.0, 2.0, 3.0] and not proto.tensor_content
    response = serving_protos().PredictResponse.FromString(response.SerializeToString())
    assert read(response.outputs["y"]).tolist() == [[0.0, 1.0], [2.0, 3.0]]


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from(
            [
                np.float32,
                np.float64,
                np.float16,
                np.int8,
                np.int16,
                np.int32,
                np.int64,
                np.uint8,
                np.uint16,
                np.uint32,
                np.uint64,
                np.bool_,
                np.complex64,
                np.complex128,
            ]
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    )
)
def test_round_trip_through_tensorflow(arr: np.ndarray) -> None:
    """array -> typed fields -> tf.make_ndarray (and C++ FromProto, and read) is the array,
    bit for bit (NaN payloads aside)."""
    proto = new_proto()
    as_proto_field(proto, arr)
    assert not proto.tensor_content
    for back in (tf.make_ndarray(proto), tf_reads(proto)):
        assert back.dtype == arr.dtype and back.shape == arr.shape
        np.testing.assert_array_equal(back, arr)
    if proto.dtype in (1, 2, 3, 4, 5, 6, 9, 10, 17, 19, 22, 23):  # the gateway's JSON dtypes
        np.testing.assert_array_equal(read(proto), arr)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_string_list_round_trip(values: list[bytes]) -> None:
    data = encode_string_list(values)
    assert decode_string_list(data, len(values)) == values
    proto = new_proto()
    proto.dtype = 7
    proto.tensor_shape.dim.add().size = len(values)
    proto.tensor_content = data
    if values:
        assert tf_reads(proto).tolist() == values  # TensorFlow's DecodeStringList agrees


@pytest.mark.parametrize("data", [b"\x05ab", b"\x01", b"\x80\x80\x80\x80\x80\x01", b"\x01ab"])
def test_malformed_string_list(data: bytes) -> None:
    with pytest.raises(TensorError, match="not a list of strings"):
        decode_string_list(data, 1)


def test_a_dtype_tensorflow_has_not_is_a_clear_error() -> None:
    with pytest.raises(TensorError, match=r"datetime64.*no TensorFlow DataType"):
        as_proto_field(new_proto(), np.array(["2020-01-01"], dtype="datetime64[D]"))
    assert data_type(np.dtype(np.float32)) == 1 and data_type(np.dtype("U3")) == 7
