"""The example's server, following the container serving contract (contract.py: the standard
library's HTTP server) with one scikit-learn model:

    GET  /ping          200 once the model is loaded
    POST /invocations   JSON — {"instances": [[...], ...]} (or "inputs"), {"dataframe_split":
                        {"columns": [...], "data": [[...]]}}, {"dataframe_records": [{...}]} —
                        or CSV (text/csv: rows of numbers, an optional header of feature names)
                        -> {"predictions": [class, ...], "probabilities": [[...], ...]}
                        A body it cannot read: 400 {"error": "..."}.

    MODEL_PATH=model.joblib PORT=8080 python serve.py
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

import joblib
import numpy as np
from contract import BadInput, serve


def _matrix(rows: Any, width: int) -> np.ndarray:
    if not isinstance(rows, list) or not rows:
        raise BadInput("expected a non-empty list of rows")
    try:
        x = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput("every value must be a number") from None
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != width:
        raise BadInput(f"each row must have {width} numbers, got shape {list(x.shape)}")
    if not np.isfinite(x).all():
        raise BadInput("every value must be a finite number")
    return x


def rows_from_json(body: bytes, features: list[str]) -> np.ndarray:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise BadInput(f"the body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadInput(
            "expected a JSON object with instances, inputs, dataframe_split or dataframe_records"
        )
    if "instances" in doc or "inputs" in doc:
        rows = doc.get("instances", doc.get("inputs"))
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            rows = [_by_name(r, features) for r in rows]
        return _matrix(rows, len(features))
    if "dataframe_split" in doc:
        split = doc["dataframe_split"]
        if not isinstance(split, dict):
            raise BadInput("dataframe_split: expected {columns, data}")
        columns, data = split.get("columns"), split.get("data")
        if columns is not None and columns != features:
            if not isinstance(columns, list) or sorted(columns) != sorted(features):
                raise BadInput(f"dataframe_split.columns: expected {features}")
            data = [[dict(zip(columns, row, strict=False))[f] for f in features] for row in data]
        return _matrix(data, len(features))
    if "dataframe_records" in doc:
        records = doc["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadInput("dataframe_records: expected a list of objects")
        return _matrix([_by_name(r, features) for r in records], len(features))
    raise BadInput("expected one of instances, inputs, dataframe_split, dataframe_records")


def _by_name(record: dict[str, Any], features: list[str]) -> list[Any]:
    missing = [f for f in features if f not in record]
    if missing:
        raise BadInput(f"a record lacks {missing}")
    return [record[f] for f in features]


def rows_from_csv(body: bytes, features: list[str]) -> np.ndarray:
    try:
        lines = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"the body is not CSV: {exc}") from None
    lines = [line for line in lines if line]
    if lines and lines[0] == features:
        lines = lines[1:]
    return _matrix(lines, len(features))


class Model:
    def __init__(self, path: str) -> None:
        self.pipeline = joblib.load(path)
        self.features: list[str] = list(self.pipeline.feature_names)
        self.classes: list[str] = list(self.pipeline.class_names)

    def predict(self, body: bytes, content_type: str) -> dict[str, Any]:
        if content_type == "text/csv":
            x = rows_from_csv(body, self.features)
        elif content_type in ("application/json", ""):
            x = rows_from_json(body, self.features)
        else:
            raise BadInput(
                f"unsupported content type {content_type!r}: use application/json or text/csv"
            )
        proba = self.pipeline.predict_proba(x)
        return {
            "predictions": [self.classes[i] for i in proba.argmax(axis=1)],
            "probabilities": np.round(proba, 6).tolist(),
        }


def main() -> None:
    model = Model(os.environ.get("MODEL_PATH", "model.joblib"))
    serve(model.predict, int(os.environ.get("PORT", "8080")), about={"features": model.features})


if __name__ == "__main__":
    main()
