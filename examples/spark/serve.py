"""The Spark example's server, on the container contract (contract.py): a PipelineModel in a
local Spark session, loaded once; each request's rows become a Spark DataFrame.

    GET  /ping          200 once the model is loaded (the JVM start and the load take seconds)
    POST /invocations   JSON ({"instances": [[x1, x2], ...]} or records, "inputs",
                        "dataframe_split", "dataframe_records") or CSV (x1,x2 rows, an optional
                        header) -> {"predictions": [y, ...]}; a body it cannot read: 400

    MODEL_PATH=model PORT=8080 python serve.py
"""

from __future__ import annotations

import os
import threading
from typing import Any

from contract import BadInput, rows, serve
from pyspark.ml import PipelineModel
from train import FEATURES, session

_loaded = threading.Event()
_state: dict[str, Any] = {}


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"every value must be a number, got {value!r}") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise BadInput("every value must be a finite number")
    return x


def _numbers(row: list[Any]) -> tuple[float, ...]:
    if len(row) != len(FEATURES):
        raise BadInput(f"each row must have {len(FEATURES)} numbers ({', '.join(FEATURES)})")
    return tuple(_number(x) for x in row)


def predict(body: bytes, ctype: str) -> dict[str, Any]:
    found = [_numbers(r) for r in rows(body, ctype, FEATURES)]
    spark, model = _state["spark"], _state["model"]
    out = model.transform(spark.createDataFrame(found, FEATURES)).select("prediction").collect()
    return {"predictions": [round(float(r["prediction"]), 6) for r in out]}


def load(path: str) -> None:
    spark = session()
    _state["spark"], _state["model"] = spark, PipelineModel.load(path)
    predict(b'{"instances": [[0, 0]]}', "application/json")  # warm the JIT and the planner
    _loaded.set()


def main() -> None:
    threading.Thread(
        target=load, args=(os.environ.get("MODEL_PATH", "model"),), daemon=True
    ).start()
    serve(
        predict,
        int(os.environ.get("PORT", "8080")),
        ready=_loaded.is_set,
        about={"features": FEATURES},
    )


if __name__ == "__main__":
    main()
