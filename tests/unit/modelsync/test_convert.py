"""modelsync.convert (shared by the gateway and the jobs worker): every request format, dtype,
shape and error, over plain values."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelsync.convert import (
    BadInput,
    kraken_inputs,
    kraken_request,
    kraken_results,
    mlflow_inputs,
    mlflow_predictions,
    parse_json,
    to_array,
)
from modelsync.tensors import Signature, TensorSpec

TWO = Signature(
    {"x": TensorSpec("float32", (-1,)), "n": TensorSpec("int64", (-1,))},
    {"y": TensorSpec("float32", (-1,))},
)
ONE = Signature({"x": TensorSpec("float32", (-1,))}, {"y": TensorSpec("float32", (-1,))})
VEC = Signature({"v": TensorSpec("float64", (-1, 3))}, {"y": TensorSpec("float64", (-1,))})


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k])


# --- formats --------------------------------------------------------------------------------


def test_every_mlflow_format_gives_the_same_tensors() -> None:
    want = {"x": np.array([1.5, 2.0], dtype=np.float32), "n": np.array([3, 4], dtype=np.int64)}
    bodies = {
        "dataframe_split": {
            "dataframe_split": {"columns": ["n", "x"], "data": [[3, 1.5], [4, 2]], "index": [0, 1]}
        },
        "dataframe_records": {"dataframe_records": [{"x": 1.5, "n": 3}, {"n": 4, "x": 2}]},
        "instances": {"instances": [{"x": 1.5, "n": 3}, {"x": 2.0, "n": 4}]},
        "inputs": {"inputs": {"x": [1.5, 2.0], "n": [3, 4]}, "params": {"ignored": True}},
    }
    for fmt, body in bodies.items():
        got_fmt, inputs = mlflow_inputs(body, TWO)
        assert got_fmt == fmt
        same(inputs, want)


def test_single_input_bare_values() -> None:
    want = {"x": np.array([1.0, 2.0], dtype=np.float32)}
    same(mlflow_inputs({"instances": [1.0, 2.0]}, ONE)[1], want)
    same(mlflow_inputs({"inputs": [1.0, 2.0]}, ONE)[1], want)
    same(mlflow_inputs({"inputs": {"x": [1, 2]}}, ONE)[1], want)


def test_columns_of_lists_become_n_by_k() -> None:
    rows = [[1, 2, 3], [4, 5, 6]]
    for body in (
        {"dataframe_split": {"columns": ["v"], "data": [[r] for r in rows]}},
        {"dataframe_records": [{"v": r} for r in rows]},
        {"instances": rows},
        {"inputs": {"v": rows}},
        {"inputs": rows},
    ):
        (_, inputs) = mlflow_inputs(body, VEC)
        assert inputs["v"].shape == (2, 3) and inputs["v"].dtype == np.float64, body
        assert inputs["v"].tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


@pytest.mark.parametrize(
    "dtype",
    [
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
    ],
)
def test_numeric_dtypes(dtype: str) -> None:
    arr = to_array([1, 2, 3], TensorSpec(dtype, (-1,)), "a")
    assert arr.dtype == np.dtype(dtype) and arr.tolist() == [1, 2, 3]


def test_bool_string_and_b64() -> None:
    assert to_array([True, False], TensorSpec("bool", (-1,)), "b").tolist() == [True, False]
    raw = b"\x00\xff"
    arr = to_array(["a", {"b64": base64.b64encode(raw).decode()}], TensorSpec("string", (-1,)), "s")
    assert arr.dtype == object and arr.tolist() == [b"a", raw]
    grid = to_array([["a", "b"], ["c", "d"]], TensorSpec("string", (-1, 2)), "s")
    assert grid.shape == (2, 2) and grid[1, 0] == b"c"
    assert to_array("one", TensorSpec("string", ()), "s").shape == ()


def test_integral_floats_are_integers_and_scalars_and_unknown_rank() -> None:
    assert to_array([2.0, 3], TensorSpec("int32", (-1,)), "n").tolist() == [2, 3]
    assert to_array(7, TensorSpec("int64", ()), "n").shape == ()
    assert to_array([[1]], TensorSpec("float32", None), "n").shape == (1, 1)
    assert to_array([[1, 2]], TensorSpec("float32", (1, 2)), "n").shape == (1, 2)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "received a list"),
        ("x", "received a string"),
        ({}, "exactly one of the fields"),
        ({"inputs": {}, "instances": []}, "exactly one of the fields"),
        ({"columns": ["x"], "data": [[1]]}, "exactly one of the fields"),
        ({"dataframe_split": {"data": [[1, 2]]}}, "'columns' must be a list of input names"),
        ({"dataframe_split": {"columns": ["x", "n"], "data": []}}, "non-empty list of rows"),
        ({"dataframe_split": {"columns": ["x", "n"], "data": [[1]]}}, "row 0 must be a list of 2"),
        ({"dataframe_split": {"columns": ["x", "x"], "data": [[1, 2]]}}, "each once"),
        (
            {"dataframe_split": {"columns": ["x", "n"], "data": [[1, 2]], "index": [0, 1]}},
            "one entry per row",
        ),
        (
            {"dataframe_split": {"columns": ["x", "n"], "data": [[1, 2]], "dtypes": {}}},
            "unexpected key 'dtypes'",
        ),
        ({"dataframe_split": {"columns": ["x"], "data": [[1]]}}, "missing input 'n'"),
        (
            {"dataframe_split": {"columns": ["x", "n", "z"], "data": [[1, 2, 3]]}},
            "unknown input 'z'",
        ),
        ({"dataframe_records": [{"x": 1}]}, "row 0 is missing input 'n'"),
        ({"dataframe_records": [{"x": 1, "n": 2, "q": 3}]}, "unknown input 'q'"),
        ({"dataframe_records": []}, "no rows"),
        ({"dataframe_records": {"x": 1}}, "expected a list of rows"),
        ({"instances": [1.0, 2.0]}, "each row must be an object"),
        ({"instances": [{"x": 1, "n": 1}, 3]}, "mix objects and bare values"),
        ({"inputs": [1.0]}, "expected an object naming the inputs"),
        ({"inputs": {"x": ["abc"], "n": [1]}}, "input 'x': expected float32 numbers, got a string"),
        ({"inputs": {"x": [1.0], "n": [1.5]}}, "input 'n': expected int64 integers"),
        ({"inputs": {"x": [1.0], "n": [2**70]}}, "input 'n'"),
        ({"inputs": {"x": [None], "n": [1]}}, "input 'x': expected float32 numbers, got null"),
        ({"inputs": {"x": [True], "n": [1]}}, "input 'x': expected float32 numbers, got booleans"),
        ({"inputs": {"x": [[1.0], [2.0, 3.0]], "n": [1]}}, "input 'x': ragged"),
        ({"inputs": {"x": [[1.0]], "n": [1]}}, "input 'x': shape [1, 1] does not fit"),
        ({"inputs": {"x": 1.0, "n": [1]}}, "input 'x': shape [] does not fit"),
        ({"inputs": {"x": {"a": 1}, "n": [1]}}, "input 'x': expected a value or a list"),
        ({"inputs": {"x": [1e39], "n": [1]}}, "input 'x': a value is out of the range of float32"),
    ],
)
def test_bad_bodies_name_the_problem(body: Any, message: str) -> None:
    with pytest.raises(BadInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        mlflow_inputs(body, TWO)


@pytest.mark.parametrize(
    ("value", "spec", "message"),
    [
        ([1, 2], TensorSpec("float32", (-1, 3)), "shape \\[2\\] does not fit"),
        ([[1, 2]], TensorSpec("float32", (-1, 3)), "shape \\[1, 2\\] does not fit"),
        ([300], TensorSpec("uint8", (-1,)), "out of the range of uint8"),
        ([-1], TensorSpec("uint32", (-1,)), "out of the range of uint32"),
        ([1], TensorSpec("bool", (-1,)), "expected booleans"),
        ([1], TensorSpec("string", (-1,)), "expected strings, got a number"),
        ([{"b64": "!!"}], TensorSpec("string", (-1,)), "invalid base64"),
        ([{"x": "a"}], TensorSpec("string", (-1,)), "got an object"),
        ([["a"], "b"], TensorSpec("string", None), "ragged"),
        ([1], TensorSpec("complex64", (-1,)), "complex64 is not supported"),
    ],
)
def test_bad_values(value: Any, spec: TensorSpec, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        to_array(value, spec, "a")


def test_parse_json() -> None:
    assert parse_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(BadInput, match="not valid JSON"):
        parse_json(b"{nope")
    with pytest.raises(BadInput, match="not UTF-8"):
        parse_json(b"\xff\xfe\xfa")


# --- ML-Kraken ------------------------------------------------------------------------------


def test_kraken_request_and_inputs() -> None:
    kr = kraken_request(
        {"modelData": {"x": [1], "n": [2]}, "metaData": {"modelId": "two", "modelVersion": 3}}
    )
    assert (kr.model, kr.version, kr.signature) == ("two", 3, "")
    want = {"x": np.array([1.0], dtype=np.float32), "n": np.array([2])}
    same(kraken_inputs(kr.model_data, TWO), want)
    same(kraken_inputs([{"x": 1, "n": 2}], TWO), want)
    same(kraken_inputs([1.0, 2.0], ONE), {"x": np.array([1.0, 2.0], dtype=np.float32)})
    assert kraken_request({"modelData": 1, "metaData": {"modelId": "a"}}).version is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"modelData": 1}, "'metaData' must be an object"),
        ({"modelData": 1, "metaData": {}}, "modelId"),
        ({"modelData": 1, "metaData": {"modelId": "bad name!"}}, "modelId"),
        ({"modelData": 1, "metaData": {"modelId": "a", "modelVersion": "3"}}, "modelVersion"),
        ({"modelData": 1, "metaData": {"modelId": "a", "modelVersion": 0}}, "modelVersion"),
        ({"modelData": 1, "metaData": {"modelId": "a", "modelVersion": True}}, "modelVersion"),
        ({"modelData": 1, "metaData": {"modelId": "a", "signatureName": 1}}, "signatureName"),
        ({"metaData": {"modelId": "a"}}, "'modelData' is missing"),
    ],
)
def test_bad_kraken_bodies(body: Any, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        kraken_request(body)


def test_kraken_model_data_errors() -> None:
    with pytest.raises(BadInput, match="modelData: expected an object naming the inputs"):
        kraken_inputs([1.0], TWO)
    with pytest.raises(BadInput, match="missing input 'n'"):
        kraken_inputs({"x": [1.0]}, TWO)


# --- outputs --------------------------------------------------------------------------------


def test_predictions_follow_mlflow() -> None:
    y = np.array([3.0, 5.0], dtype=np.float32)
    assert mlflow_predictions({"y": y}, "inputs") == {"predictions": [3.0, 5.0]}
    assert mlflow_predictions({"y": y.reshape(2, 1)}, "dataframe_split") == {
        "predictions": [3.0, 5.0]
    }
    assert mlflow_predictions({"y": np.ones((2, 2))}, "inputs") == {
        "predictions": [[1.0, 1.0], [1.0, 1.0]]
    }
    two = {"y": y, "n2": np.array([2, 4])}
    rows = [{"y": 3.0, "n2": 2}, {"y": 5.0, "n2": 4}]
    assert mlflow_predictions(two, "dataframe_records") == {"predictions": rows}
    assert mlflow_predictions(two, "dataframe_split") == {"predictions": rows}
    assert mlflow_predictions(two, "inputs") == {"predictions": {"y": [3.0, 5.0], "n2": [2, 4]}}
    assert mlflow_predictions(two, "instances") == {"predictions": {"y": [3.0, 5.0], "n2": [2, 4]}}
    uneven = {"y": y, "s": np.array(7)}
    assert mlflow_predictions(uneven, "dataframe_split") == {
        "predictions": {"y": [3.0, 5.0], "s": 7}
    }
    strings = np.empty(2, dtype=object)
    strings[:] = [b"a", b"\xff"]
    assert mlflow_predictions({"s": strings}, "inputs") == {"predictions": ["a", {"b64": "/w=="}]}
    json.dumps(mlflow_predictions(two, "dataframe_split"))


def test_kraken_results() -> None:
    y = np.array([3.0, 5.0], dtype=np.float32)
    assert kraken_results({"y": y}) == [3.0, 5.0]
    assert kraken_results({"y": y, "n2": np.array([2, 4])}) == [
        {"y": 3.0, "n2": 2},
        {"y": 5.0, "n2": 4},
    ]
    assert kraken_results({"y": y, "s": np.array([1])}) == {"y": [3.0, 5.0], "s": [1]}


# --- properties -----------------------------------------------------------------------------

floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)
ints = st.integers(-(2**62), 2**62)
rows_st = st.lists(st.tuples(floats, ints), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(rows_st, st.permutations(["x", "n"]))
def test_split_records_instances_and_inputs_agree(
    rows: list[tuple[float, int]], order: list[str]
) -> None:
    records = [{"x": x, "n": n} for x, n in rows]
    bodies = [
        {"dataframe_split": {"columns": order, "data": [[r[c] for c in order] for r in records]}},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": {"x": [x for x, _ in rows], "n": [n for _, n in rows]}},
    ]
    results = [mlflow_inputs(json.loads(json.dumps(b)), TWO)[1] for b in bodies]
    for other in results[1:]:
        same(results[0], other)
    assert results[0]["x"].dtype == np.float32 and results[0]["n"].dtype == np.int64
    assert results[0]["n"].tolist() == [n for _, n in rows]
    same(kraken_inputs(records, TWO), results[0])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(floats, min_size=3, max_size=3), min_size=1, max_size=10))
def test_vectors_agree_across_formats(vectors: list[list[float]]) -> None:
    a = mlflow_inputs({"instances": vectors}, VEC)[1]["v"]
    b = mlflow_inputs({"dataframe_records": [{"v": v} for v in vectors]}, VEC)[1]["v"]
    c = mlflow_inputs({"inputs": {"v": vectors}}, VEC)[1]["v"]
    assert a.shape == (len(vectors), 3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_any_json_value_is_accepted_or_a_bad_input(value: Any) -> None:
    for spec in (
        TensorSpec("float32", (-1,)),
        TensorSpec("int64", (-1, 2)),
        TensorSpec("bool", None),
        TensorSpec("string", (-1,)),
        TensorSpec("uint8", ()),
    ):
        try:
            arr = to_array(value, spec, "a")
        except BadInput:
            continue
        assert isinstance(arr, np.ndarray)
        if spec.shape is not None:
            assert arr.ndim == len(spec.shape)
    for fmt in ("dataframe_split", "dataframe_records", "instances", "inputs"):
        with contextlib.suppress(BadInput):
            mlflow_inputs({fmt: value}, TWO)


def test_non_finite_outputs_are_valid_json_as_tf_servings_words() -> None:
    """TF Serving's REST writes NaN and infinities as the bare tokens NaN, Infinity, -Infinity
    (util/json_tensor.cc), which strict parsers refuse: the gateway answers the same words as
    JSON strings, so its answers always parse and lose nothing."""
    y = np.array([1.5, np.nan, np.inf, -np.inf], dtype=np.float32)
    for doc in (
        mlflow_predictions({"y": y}, "inputs"),
        {"results": kraken_results({"y": y, "z": y * 2})},
    ):
        text = json.dumps(doc, allow_nan=False)

        def refuse(name: str) -> None:
            raise AssertionError(f"a bare {name}")

        parsed = json.loads(text, parse_constant=refuse)
        flat = parsed.get("predictions") or [row["y"] for row in parsed["results"]]
        assert flat == [1.5, "NaN", "Infinity", "-Infinity"]
        assert [float(v) for v in flat[2:]] == [np.inf, -np.inf]
