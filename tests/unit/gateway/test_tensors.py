"""modelsync.tensors: TensorProtos written and read without TensorFlow agree with TensorFlow's."""

from __future__ import annotations

import numpy as np
import pytest

from modelsync.protos import serving_protos
from modelsync.tensors import fill, read, signatures

DTYPES = [
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
    "bool",
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_fill_is_what_tensorflow_reads(dtype: str) -> None:
    import tensorflow as tf

    arr = np.arange(6).reshape(2, 3).astype(dtype)
    proto = serving_protos().get("tensorflow.TensorProto")()
    fill(proto, arr)
    from tensorflow.core.framework import tensor_pb2

    back = tf.make_ndarray(tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
    assert back.dtype == arr.dtype and back.shape == (2, 3)
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_takes_what_tensorflow_writes(dtype: str) -> None:
    import tensorflow as tf

    arr = np.arange(6).reshape(3, 2).astype(dtype)
    cls = serving_protos().get("tensorflow.TensorProto")
    for proto in (
        tf.make_tensor_proto(arr),  # tensor_content
        tf.make_tensor_proto(arr.reshape(-1).tolist(), dtype=tf.as_dtype(arr.dtype), shape=[3, 2]),
    ):  # typed values
        got = read(cls.FromString(proto.SerializeToString()))
        assert got.dtype == arr.dtype and got.shape == (3, 2)
        np.testing.assert_array_equal(got, arr)


def test_strings_and_repeated_last_value() -> None:
    import tensorflow as tf

    cls = serving_protos().get("tensorflow.TensorProto")
    strings = np.array([b"a", b"\xff"], dtype=object)
    proto = cls()
    fill(proto, strings)
    from tensorflow.core.framework import tensor_pb2

    assert tf.make_ndarray(
        tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    ).tolist() == [b"a", b"\xff"]
    assert read(
        cls.FromString(tf.make_tensor_proto([b"x", b"y"]).SerializeToString())
    ).tolist() == [b"x", b"y"]
    filled = tf.make_tensor_proto(7.0, dtype=tf.float32, shape=[3])  # one value for 3
    assert read(cls.FromString(filled.SerializeToString())).tolist() == [7.0, 7.0, 7.0]
    bad = cls()
    bad.dtype = 8  # complex64
    with pytest.raises(ValueError, match="complex64"):
        read(bad)


def test_signatures_from_a_signature_def_map() -> None:
    p = serving_protos()
    sdm = p.get("tensorflow.serving.SignatureDefMap")()
    sd = sdm.signature_def["serving_default"]
    sd.inputs["x"].name, sd.inputs["x"].dtype = "x:0", 1
    sd.inputs["x"].tensor_shape.dim.add().size = -1
    sd.inputs["n"].name, sd.inputs["n"].dtype = "n:0", 9
    sd.inputs["n"].tensor_shape.unknown_rank = True
    sd.outputs["y"].name, sd.outputs["y"].dtype = "y:0", 7
    sig = signatures(sdm)["serving_default"]
    assert sig.inputs["x"].dtype == "float32" and sig.inputs["x"].shape == (-1,)
    assert sig.inputs["n"].dtype == "int64" and sig.inputs["n"].shape is None
    assert sig.outputs["y"].dtype == "string" and sig.outputs["y"].shape == ()
