"""Train the Spark example's model: a Spark ML pipeline (VectorAssembler, then
LinearRegression) on a small deterministic data set, y = 3 x1 - 2 x2 + 1 with a little noise,
saved as a PipelineModel directory.

    python train.py [OUT]      # default: model/

Spark runs in local mode (Debian's OpenJDK); the image runs this at build time.
"""

from __future__ import annotations

import json
import random
import sys

from pyspark.ml import Pipeline
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import LinearRegression
from pyspark.sql import SparkSession

FEATURES = ["x1", "x2"]


def session() -> SparkSession:
    return (
        SparkSession.builder.master("local[1]")
        .appName("modelsync-example-spark")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )


def main(out: str = "model") -> None:
    spark = session()
    rng = random.Random(7)
    rows = []
    for _ in range(400):
        x1, x2 = rng.uniform(-5, 5), rng.uniform(-5, 5)
        rows.append((x1, x2, 3 * x1 - 2 * x2 + 1 + rng.gauss(0, 0.01)))
    frame = spark.createDataFrame(rows, [*FEATURES, "y"])
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=FEATURES, outputCol="features"),
            LinearRegression(featuresCol="features", labelCol="y"),
        ]
    )
    model = pipeline.fit(frame)
    model.write().overwrite().save(out)
    lr = model.stages[-1]
    print(
        json.dumps({"model": out, "coefficients": list(lr.coefficients), "intercept": lr.intercept})
    )
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:2])
