"""A job's input (pure): an upload's JSON Lines or CSV into rows, one JSON text per row, and a
CSV row's text cells into the values a signature wants.

- JSON Lines: each line one JSON value (an object of named inputs, as MLflow's
  ``dataframe_records`` rows, or a bare value for a single-input model); blank lines are no rows.
- CSV: a header of input names, then one record per row; a cell is text until the worker knows
  the signature (``csv_row_values``): numbers for numeric inputs, ``true``/``false`` for
  booleans, a JSON list for an input with more dimensions (``"[1, 2]"``).

What is not one of these (a line that is not JSON, not UTF-8, a row longer than the limit, a
record with another number of fields than the header) makes the file malformed: the submit is
refused with the line's number. A row that is JSON but does not fit the model is not a
malformed file: it becomes an error line of the result.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from modelsync.tensors import Signature

MAX_ROW_BYTES = 1 << 20
MAX_COLUMNS = 10_000


class MalformedInput(ValueError):
    """The upload is not the JSON Lines or CSV it says it is; the message names the line."""


def bounded_lines(readline: Callable[[int], bytes], max_row_bytes: int) -> Iterator[bytes]:
    """The lines ``readline(limit)`` gives, each at most ``max_row_bytes`` (newline excluded):
    a longer one is MalformedInput, so no line is ever held beyond the limit."""
    number = 0
    while True:
        line = readline(max_row_bytes + 2)
        if not line:
            return
        number += 1
        body = line.rstrip(b"\r\n")
        if len(body) > max_row_bytes:
            raise MalformedInput(
                f"line {number} is longer than {max_row_bytes} bytes (the limit of one row)"
            )
        yield line


def jsonl_rows(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Each non-blank line's JSON text (stripped), checked to parse."""
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            json.loads(text)
        except UnicodeDecodeError:
            raise MalformedInput(f"line {number} is not UTF-8 text") from None
        except ValueError as exc:
            raise MalformedInput(f"line {number} is not JSON: {exc}") from None
        yield text


def _decoded(lines: Iterable[bytes]) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    for number, line in enumerate(lines, 1):
        try:
            yield decoder.decode(line)
        except UnicodeDecodeError:
            raise MalformedInput(f"line {number} is not UTF-8 text") from None


def csv_rows(lines: Iterable[bytes]) -> Iterator[bytes]:
    """A JSON object ``{name: cell}`` per CSV record, the names from the header line."""
    reader = csv.reader(_decoded(lines), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(name.strip() for name in header):
            raise MalformedInput("the CSV file has no header line (the input names)")
        names = [name.strip() for name in header]
        if "" in names or len(set(names)) != len(names) or len(names) > MAX_COLUMNS:
            raise MalformedInput(
                "the CSV header must name each input once, none empty "
                f"(at most {MAX_COLUMNS} columns)"
            )
        for record in reader:
            if not record or record == [""]:
                continue  # a blank line
            if len(record) != len(names):
                raise MalformedInput(
                    f"CSV line {reader.line_num} has {len(record)} fields; the header has "
                    f"{len(names)}"
                )
            yield json.dumps(dict(zip(names, record, strict=True)), separators=(",", ":")).encode()
    except csv.Error as exc:
        raise MalformedInput(f"CSV line {reader.line_num}: {exc}") from None


def _cell(cell: str, dtype: str) -> Any:
    if dtype == "string":
        return cell
    text = cell.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return cell
    if dtype == "bool":
        return {"true": True, "false": False, "1": True, "0": False}.get(text.lower(), cell)
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            continue
    return cell  # left as text: the conversion says what is wrong with it


def csv_row_values(row: Any, sig: Signature) -> Any:
    """A CSV row's cells as the values ``sig``'s inputs want (unknown names stay as they are:
    the conversion names them)."""
    if not isinstance(row, Mapping):
        return row
    return {
        k: _cell(v, sig.inputs[k].dtype) if k in sig.inputs and isinstance(v, str) else v
        for k, v in row.items()
    }
