"""Train the example's model: a scikit-learn pipeline (scaling, logistic regression) on the
iris data set that ships with scikit-learn (no download), saved with joblib.

    python train.py [OUT]      # default: model.joblib

It prints the test accuracy; the image runs it at build time, so each image holds its model.
"""

from __future__ import annotations

import json
import sys

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main(out: str = "model.joblib") -> None:
    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=7, stratify=data.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(x_train, y_train)
    model.feature_names = list(data.feature_names)
    model.class_names = [str(n) for n in data.target_names]
    joblib.dump(model, out)
    accuracy = float(model.score(x_test, y_test))
    print(json.dumps({"model": out, "test_accuracy": round(accuracy, 4), "rows": len(data.data)}))


if __name__ == "__main__":
    main(*sys.argv[1:2])
