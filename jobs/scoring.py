"""Score one chunk's rows (pure: TF Serving is the ``predict`` it is given).

Rows go to TF Serving in batches of ``batch_rows``. A batch that does not fit the signature is
checked row by row: the rows that fit are sent together, each row that does not is an error
line naming its problem. A batch TF Serving refuses as a whole (INVALID_ARGUMENT: ``Rejected``)
is sent again one row at a time, so only the rows at fault become errors. Anything else
``predict`` raises (TF Serving down, the model not loaded) is not the rows' fault: it leaves
this function, and the chunk is retried.

The result is one line per row, in the rows' order (``modelsync.jobs.model.ok_line`` and
``error_line``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelsync.convert import BadInput, Inputs, jsonable, records_inputs, to_array
from modelsync.jobs.model import error_line, ok_line
from modelsync.jobs.rows import csv_row_values
from modelsync.tensors import Array, Signature

Build = Callable[[Signature], Inputs]
# predict(build) -> (the version that answered, its outputs); build(signature) gives the inputs
Predict = Callable[[Build], tuple[int, Mapping[str, Array]]]


class Rejected(Exception):
    """TF Serving refused the rows themselves (INVALID_ARGUMENT and the like)."""


class _NothingToSend(Exception):
    pass


@dataclass
class ChunkResult:
    lines: list[bytes]
    errors: int = 0
    versions: dict[int, int] = field(default_factory=dict)
    first_error: str | None = None

    @property
    def rows(self) -> int:
        return len(self.lines)


def parse_rows(lines: Sequence[bytes]) -> list[Any]:
    """A chunk's input object, one JSON value per line (the master checked them)."""
    out: list[Any] = []
    for line in lines:
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append(_Unparsable())
    return out


class _Unparsable:
    """A row that is not JSON (the master refuses those; kept for a hand-written object)."""


def row_problem(row: Any, sig: Signature) -> str | None:
    """Why one row cannot become the signature's inputs (None: it can)."""
    if isinstance(row, _Unparsable):
        return "the row is not JSON"
    names = sorted(sig.inputs)
    if isinstance(row, dict) and not (len(names) == 1 and set(row) == {"b64"}):
        missing = [k for k in names if k not in row]
        unknown = [k for k in row if k not in sig.inputs]
        if missing or unknown:
            what = f"missing input {missing[0]!r}" if missing else f"unknown input {unknown[0]!r}"
            return f"{what} (the signature's inputs are {names})"
        items = [(k, row[k]) for k in names]
    elif len(names) == 1:
        items = [(names[0], row)]
    else:
        return f"the row must be an object naming the inputs {names}"
    try:
        for name, value in items:
            to_array([value], sig.inputs[name], name)
    except BadInput as exc:
        return str(exc)
    return None


def _per_row(outputs: Mapping[str, Array], n: int) -> list[dict[str, Any]] | None:
    if any(a.ndim == 0 or a.shape[0] != n for a in outputs.values()):
        return None
    columns = {k: jsonable(v) for k, v in outputs.items()}
    return [{k: columns[k][i] for k in columns} for i in range(n)]


class _Chunk:
    def __init__(self, rows: Sequence[Any], first_row: int, predict: Predict, csv: bool) -> None:
        self.rows = rows
        self.first_row = first_row
        self.predict = predict
        self.csv = csv
        self.lines: list[bytes | None] = [None] * len(rows)
        self.result = ChunkResult([])

    def _value(self, i: int, sig: Signature) -> Any:
        return csv_row_values(self.rows[i], sig) if self.csv else self.rows[i]

    def error(self, i: int, message: str) -> None:
        self.lines[i] = error_line(self.first_row + i, message)
        self.result.errors += 1
        if self.result.first_error is None:
            self.result.first_error = f"row {self.first_row + i}: {message}"

    def ok(self, i: int, version: int, outputs: Mapping[str, Any]) -> None:
        try:
            self.lines[i] = ok_line(self.first_row + i, version, outputs)
        except ValueError:  # NaN or infinity: not JSON
            self.error(i, f"version {version} answered a value that is not finite (NaN or inf)")
            return
        self.result.versions[version] = self.result.versions.get(version, 0) + 1

    def batch(self, indices: list[int]) -> None:
        sent = list(indices)
        refused: dict[int, str] = {}

        def build(sig: Signature) -> Inputs:
            nonlocal sent, refused
            try:
                sent, refused = list(indices), {}
                return records_inputs([self._value(i, sig) for i in indices], sig)
            except BadInput:
                problems = {i: row_problem(self._value(i, sig), sig) for i in indices}
                refused = {i: p for i, p in problems.items() if p is not None}
                sent = [i for i in indices if i not in refused]
                if not sent:
                    raise _NothingToSend from None
                return records_inputs([self._value(i, sig) for i in sent], sig)

        try:
            version, outputs = self.predict(build)
        except _NothingToSend:
            for i, message in refused.items():
                self.error(i, message)
            return
        except (BadInput, Rejected) as exc:
            if len(indices) == 1:
                self.error(indices[0], str(exc))
                return
            for i in indices:  # one at a time: only the rows at fault become errors
                self.batch([i])
            return
        for i, message in refused.items():
            self.error(i, message)
        per_row = _per_row(outputs, len(sent))
        if per_row is None and len(sent) == 1:
            per_row = [{k: jsonable(v) for k, v in outputs.items()}]
        if per_row is None:  # the outputs are not one per row: ask for each row alone
            for i in sent:
                self.batch([i])
            return
        for i, doc in zip(sent, per_row, strict=True):
            self.ok(i, version, doc)


def score_rows(
    rows: Sequence[Any], first_row: int, predict: Predict, batch_rows: int, *, csv: bool = False
) -> ChunkResult:
    """One line per row of ``rows`` (the rows ``first_row``... of the job), in order."""
    chunk = _Chunk(rows, first_row, predict, csv)
    for start in range(0, len(rows), max(1, batch_rows)):
        chunk.batch(list(range(start, min(len(rows), start + batch_rows))))
    chunk.result.lines = [line for line in chunk.lines if line is not None]
    assert len(chunk.result.lines) == len(rows)
    return chunk.result
