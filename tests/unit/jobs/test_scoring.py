"""jobs.scoring: one result line per row, in order, with the version that scored it or the row's
own error — over a fake ``predict`` (y = 2x + 1) that can refuse, fail or answer oddly."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.scoring import Build, Rejected, parse_rows, score_rows
from modelsync.tensors import Signature, TensorSpec

SIG = Signature({"x": TensorSpec("float32", (-1,))}, {"y": TensorSpec("float32", (-1,))})


class Down(Exception):
    pass


class Model:
    """y = 2x + 1 by version ``version``; rejects a batch holding a value of ``reject``."""

    def __init__(self, version: int = 3, reject: float | None = None, down: bool = False) -> None:
        self.version, self.reject, self.down = version, reject, down
        self.calls: list[int] = []

    def __call__(self, build: Build) -> tuple[int, dict[str, Any]]:
        if self.down:
            raise Down("TF Serving is down")
        x = build(SIG)["x"]
        self.calls.append(len(x))
        if self.reject is not None and np.any(x == self.reject):
            raise Rejected(f"the model refuses {self.reject}")
        return self.version, {"y": 2 * x + 1}


def lines(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.lines]


def test_each_row_gets_its_line_in_order_bad_rows_their_error() -> None:
    rows = [{"x": 1.0}, {"x": "a"}, {"x": 2.0}, {"y": 1}, {"x": 3.0}, {"x": [1, 2]}]
    model = Model()
    result = score_rows(rows, 100, model, batch_rows=1000)
    out = lines(result)
    assert [d["row"] for d in out] == list(range(100, 106))
    assert out[0] == {"row": 100, "version": 3, "outputs": {"y": 3.0}}
    assert "expected float32 numbers, got a string" in out[1]["error"]
    assert out[2]["outputs"] == {"y": 5.0} and out[4]["outputs"] == {"y": 7.0}
    assert out[3]["error"].startswith("missing input 'x'")
    assert "shape" in out[5]["error"]
    assert (result.rows, result.errors, result.versions) == (6, 3, {3: 3})
    assert result.first_error is not None and result.first_error.startswith("row 101: ")
    assert model.calls == [3]  # the good rows went together, once


def test_rows_tf_serving_refuses_are_found_one_by_one() -> None:
    model = Model(reject=7.0)
    out = lines(score_rows([{"x": 1.0}, {"x": 7.0}, {"x": 2.0}], 0, model, batch_rows=10))
    assert out[1] == {"row": 1, "error": "the model refuses 7.0"}
    assert [d.get("outputs") for d in out] == [{"y": 3.0}, None, {"y": 5.0}]


def test_batches_of_batch_rows() -> None:
    model = Model()
    result = score_rows([{"x": float(i)} for i in range(25)], 0, model, batch_rows=10)
    assert model.calls == [10, 10, 5] and result.errors == 0


def test_trouble_that_is_not_the_rows_leaves_the_chunk_to_be_retried() -> None:
    with pytest.raises(Down):
        score_rows([{"x": 1.0}], 0, Model(down=True), batch_rows=10)


def test_csv_cells_are_numbers_for_numeric_inputs() -> None:
    out = lines(score_rows([{"x": "1.5"}, {"x": "nope"}], 0, Model(), batch_rows=10, csv=True))
    assert out[0]["outputs"] == {"y": 4.0} and "got a string" in out[1]["error"]


def test_outputs_that_are_not_one_per_row_are_asked_row_by_row() -> None:
    def summed(build: Build) -> tuple[int, dict[str, Any]]:
        x = build(SIG)["x"]
        return 1, {"total": np.array(float(x.sum()), dtype=np.float32)}

    out = lines(score_rows([{"x": 1.0}, {"x": 2.0}], 0, summed, batch_rows=10))
    assert [d["outputs"] for d in out] == [{"total": 1.0}, {"total": 2.0}]


def test_a_non_finite_answer_is_that_rows_error() -> None:
    def nan(build: Build) -> tuple[int, dict[str, Any]]:
        x = build(SIG)["x"]
        return 2, {"y": np.where(x > 1, np.nan, x)}

    out = lines(score_rows([{"x": 1.0}, {"x": 2.0}], 0, nan, batch_rows=10))
    assert out[0]["outputs"] == {"y": 1.0} and "not finite" in out[1]["error"]


def test_parse_rows_keeps_a_line_that_is_not_json_as_an_error_row() -> None:
    rows = parse_rows([b'{"x": 1}', b"", b"oops"])
    out = lines(score_rows(rows, 0, Model(), batch_rows=10))
    assert len(out) == 2 and out[1]["error"] == "the row is not JSON"


row_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: {"x": v}),
    st.text(max_size=3).map(lambda v: {"x": v}),
    st.just({"y": 1}),
    st.just(None),
)


@given(st.lists(row_values, max_size=40), st.integers(1, 12), st.integers(0, 10**6))
def test_every_row_exactly_once_in_order(rows: list[Any], batch: int, first: int) -> None:
    result = score_rows(rows, first, Model(reject=0.0), batch_rows=batch)
    out = lines(result)
    assert [d["row"] for d in out] == list(range(first, first + len(rows)))
    assert result.errors == sum("error" in d for d in out)
    assert sum(result.versions.values()) == len(rows) - result.errors


def test_rows_that_only_fit_alone_are_sent_alone() -> None:
    """Objects and bare values mixed (each fine alone) cannot go in one batch."""
    model = Model()
    out = lines(score_rows([{"x": 1.0}, 2.0], 0, model, batch_rows=10))
    assert [d["outputs"] for d in out] == [{"y": 3.0}, {"y": 5.0}] and model.calls == [1, 1]
