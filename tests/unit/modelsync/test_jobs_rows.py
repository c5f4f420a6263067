"""modelsync.jobs.rows: uploads into rows (JSON Lines, CSV), bounded lines, and CSV cells into
the values of a signature."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelsync.jobs.rows import (
    MalformedInput,
    bounded_lines,
    csv_row_values,
    csv_rows,
    jsonl_rows,
)
from modelsync.tensors import Signature, TensorSpec


def lines(text: bytes, limit: int = 1 << 20) -> list[bytes]:
    return list(bounded_lines(io.BytesIO(text).readline, limit))


def test_json_lines_skip_blank_lines_and_keep_each_row() -> None:
    rows = list(jsonl_rows(lines(b'{"x": 1}\n\n  \n{"x": [1, 2]}\r\n3\n"s"')))
    assert [json.loads(r) for r in rows] == [{"x": 1}, {"x": [1, 2]}, 3, "s"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"x": 1}\nnot json\n', "line 2 is not JSON"),
        (b'{"x": 1}\n{"x": \xff}\n', "line 2 is not UTF-8"),
        (b'{"x": 1}\n{"x": 1', "line 2 is not JSON"),
    ],
)
def test_a_malformed_json_lines_file_names_its_line(data: bytes, message: str) -> None:
    with pytest.raises(MalformedInput, match=message):
        list(jsonl_rows(lines(data)))


def test_a_line_longer_than_the_limit_is_malformed_without_being_held() -> None:
    data = b'{"x": 1}\n' + b"[" + b"1," * 1000 + b"1]\n"
    reads: list[int] = []
    stream = io.BytesIO(data)

    def readline(limit: int) -> bytes:
        reads.append(limit)
        return stream.readline(limit)

    with pytest.raises(MalformedInput, match="line 2 is longer than 100 bytes"):
        list(bounded_lines(readline, 100))
    assert max(reads) == 102


def test_csv_rows_are_objects_of_the_header_names() -> None:
    data = b'x,n,s\n1.5,2,"a, b"\n\n3,4,"multi\nline"\n'
    rows = [json.loads(r) for r in csv_rows(lines(data))]
    assert rows == [{"x": "1.5", "n": "2", "s": "a, b"}, {"x": "3", "n": "4", "s": "multi\nline"}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no header"),
        (b"x,x\n1,2\n", "name each input once"),
        (b"x,,y\n1,2,3\n", "name each input once"),
        (b"x,y\n1,2\n3\n", "CSV line 3 has 1 fields; the header has 2"),
        (b"x\n\xff\n", "not UTF-8"),
        (b'x\n"unclosed\n', "CSV line"),
    ],
)
def test_a_malformed_csv_file_names_its_line(data: bytes, message: str) -> None:
    with pytest.raises(MalformedInput, match=message):
        list(csv_rows(lines(data)))


SIG = Signature(
    {
        "x": TensorSpec("float32", (-1,)),
        "n": TensorSpec("int64", (-1,)),
        "b": TensorSpec("bool", (-1,)),
        "s": TensorSpec("string", (-1,)),
        "v": TensorSpec("float32", (-1, 2)),
    },
    {},
)


def test_csv_cells_become_the_signature_values() -> None:
    row = {"x": "1.5", "n": " 7 ", "b": "true", "s": "42", "v": "[1, 2]", "other": "9"}
    assert csv_row_values(row, SIG) == {
        "x": 1.5,
        "n": 7,
        "b": True,
        "s": "42",
        "v": [1, 2],
        "other": "9",
    }
    assert csv_row_values({"x": "abc", "v": "[1,"}, SIG) == {"x": "abc", "v": "[1,"}
    assert csv_row_values([1, 2], SIG) == [1, 2]


@given(st.lists(st.dictionaries(st.sampled_from("abc"), st.integers(), min_size=1), max_size=30))
def test_every_json_row_comes_back(rows: list[dict[str, int]]) -> None:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    assert [json.loads(r) for r in jsonl_rows(lines(data))] == rows
