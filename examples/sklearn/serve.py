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

import os
from typing import Any

import joblib
import numpy as np
from contract import BadInput, rows, serve


def _matrix(found: list[list[Any]], width: int) -> np.ndarray:
    try:
        x = np.asarray(found, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInput("every value must be a number") from None
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != width:
        raise BadInput(f"each row must have {width} numbers, got shape {list(x.shape)}")
    if not np.isfinite(x).all():
        raise BadInput("every value must be a finite number")
    return x


class Model:
    def __init__(self, path: str) -> None:
        self.pipeline = joblib.load(path)
        self.features: list[str] = list(self.pipeline.feature_names)
        self.classes: list[str] = list(self.pipeline.class_names)

    def predict(self, body: bytes, content_type: str) -> dict[str, Any]:
        x = _matrix(rows(body, content_type, self.features), len(self.features))
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
