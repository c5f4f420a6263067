"""The container serving contract's HTTP side, standard library only (any Python model can use
it; scripts/build-example.sh puts it into each example's build context):

GET  /ping          200 {"status": "ready", ...} once ``ready()`` says so, else 503
POST /invocations   the body and its media type go to ``predict``; its answer is the JSON
                    reply; ``BadInput`` is a 400 {"error": "..."}, a body over
                    MAX_BODY_BYTES a 413, anything else the model raises a 500

serve(predict, port=8080, about={...})
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY_BYTES = 16 * 2**20
Predict = Callable[[bytes, str], Any]  # (body, media type) -> the JSON answer


class BadInput(ValueError):
    """The request cannot be scored: a 400 with this message."""


FORMS = "instances, inputs, dataframe_split or dataframe_records"


def rows(body: bytes, media_type: str, features: list[str] | None = None) -> list[list[Any]]:
    """The rows of an ``/invocations`` body, its values as sent: JSON in MLflow's forms
    (``instances``/``inputs`` of rows or records, ``dataframe_split``, ``dataframe_records``) or
    CSV (a first line equal to ``features`` is a header). With ``features``, records and named
    columns come in that order (a missing one is BadInput); without, in their own."""
    if media_type == "text/csv":
        try:
            lines = [r for r in csv.reader(io.StringIO(body.decode("utf-8"))) if r]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise BadInput(f"the body is not CSV: {exc}") from None
        if lines and features is not None and [c.strip() for c in lines[0]] == features:
            lines = lines[1:]
        return _non_empty(lines)
    if media_type not in ("application/json", ""):
        raise BadInput(f"unsupported content type {media_type!r}: use application/json or text/csv")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise BadInput(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadInput(f"expected a JSON object with {FORMS}")
    if "instances" in doc or "inputs" in doc:
        found = doc.get("instances", doc.get("inputs"))
    elif isinstance(doc.get("dataframe_split"), dict):
        split = doc["dataframe_split"]
        columns, data = split.get("columns"), split.get("data")
        if not isinstance(data, list):
            raise BadInput("dataframe_split.data: expected a list of rows")
        found = data if columns is None else [dict(zip(columns, r, strict=False)) for r in data]
    elif "dataframe_records" in doc:
        found = doc["dataframe_records"]
    else:
        raise BadInput(f"expected one of {FORMS}")
    return [_row(r, features) for r in _non_empty(found)]


def _non_empty(found: Any) -> list[Any]:
    if not isinstance(found, list) or not found:
        raise BadInput("expected a non-empty list of rows")
    return found


def _row(row: Any, features: list[str] | None) -> list[Any]:
    if isinstance(row, dict):
        if features is None:
            return list(row.values())
        missing = [f for f in features if f not in row]
        if missing:
            raise BadInput(f"a record lacks {missing}")
        return [row[f] for f in features]
    return row if isinstance(row, list) else [row]


def handler(
    predict: Predict, ready: Callable[[], bool], about: dict[str, Any]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, doc: Any) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            # one write for the head and the body (end_headers() would send the head alone)
            self._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]
            self.wfile.write(b"".join(self._headers_buffer) + data)  # type: ignore[attr-defined]
            self._headers_buffer = []

        def do_GET(self) -> None:
            if self.path != "/ping":
                self._send(404, {"error": f"no route {self.path}"})
            elif ready():
                self._send(200, {"status": "ready", **about})
            else:
                self._send(503, {"status": "loading"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(413, {"error": f"the body is larger than {MAX_BODY_BYTES} bytes"})
                return
            body = self.rfile.read(length)
            if self.path != "/invocations":
                self._send(404, {"error": f"no route {self.path}"})
                return
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            try:
                self._send(200, predict(body, ctype))
            except BadInput as exc:
                self._send(400, {"error": str(exc)})
            except Exception as exc:  # the model failed: the caller gets a 500 that says so
                self._send(500, {"error": f"the model failed: {type(exc).__name__}: {exc}"})

    return Handler


def serve(
    predict: Predict,
    port: int = 8080,
    host: str = "0.0.0.0",
    ready: Callable[[], bool] = lambda: True,
    about: dict[str, Any] | None = None,
) -> None:
    server = ThreadingHTTPServer((host, port), handler(predict, ready, about or {}))
    server.daemon_threads = True
    print(json.dumps({"event": "serving", "port": port, **(about or {})}), flush=True)
    server.serve_forever()
