"""Real, small SavedModels for the demo, the tests and the benchmarks (imports TensorFlow).

``make_linear_model(out, a, b)`` writes a SavedModel whose ``serving_default`` signature maps
``x`` (float32, shape [None]) to ``y = a*x + b``. ``shards`` splits the variables into that many
``variables.data-*-of-N`` files; ``pad_bytes`` adds incompressible variables (spread over the
shards) to make the model as large as a benchmark needs.
"""

from __future__ import annotations

import os
from pathlib import Path


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def make_linear_model(out: str | os.PathLike[str], a: float, b: float = 0.0, *,
                      shards: int = 1, pad_bytes: int = 0, seed: int = 0) -> Path:
    _quiet_tf()
    import numpy as np
    import tensorflow as tf

    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()):
        raise FileExistsError(f"{out_path} exists and is not empty")
    shards = max(1, shards)
    rng = np.random.default_rng(seed)
    floats = pad_bytes // 4
    per_shard = max(floats // shards, 1024)

    class Linear(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(a, dtype=tf.float32, name="a")
            self.b = tf.Variable(b, dtype=tf.float32, name="b")
            n_pad = shards if shards > 1 or pad_bytes else 0
            self.pad = [tf.Variable(rng.random(per_shard, dtype=np.float32), name=f"pad{i}")
                        for i in range(n_pad)]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def double(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            y = self.a * x + self.b
            return {"y": y, "y2": 2.0 * y}

    module = Linear()
    options = None
    if shards > 1:
        # The policy slices tensors to fill shards: spread ~2 KiB of overhead (a, b, the object
        # graph) over the shards so the count comes out exactly `shards`.
        shard_bytes = per_shard * 4 + -(-2048 // shards)
        policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=shard_bytes)
        options = tf.saved_model.SaveOptions(experimental_sharding_callback=policy)
    out_path.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(out_path),
                        signatures={"serving_default": module.serve, "double": module.double},
                        options=options)
    (out_path / "assets.extra").mkdir(exist_ok=True)
    (out_path / "assets.extra" / "modelsync_demo.txt").write_text(
        f"linear model y = {a} * x + {b}\n")
    return out_path


def make_example_model(out: str | os.PathLike[str], a: float, b: float = 0.0) -> Path:
    """A SavedModel with TF Serving's tf.Example signatures, for Classify and Regress.

    ``regress``: y = a*x + b from a float feature ``x``. ``classify``: classes ["neg", "pos"],
    scores [1 - p, p] with p = sigmoid(a*x + b). ``serving_default`` predicts from ``x`` directly.
    """
    _quiet_tf()
    import tensorflow as tf

    v1 = tf.compat.v1
    out_path = Path(out)
    with tf.Graph().as_default():
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})
        a_var = v1.Variable(a, dtype=tf.float32, name="a")
        b_var = v1.Variable(b, dtype=tf.float32, name="b")
        y = a_var * features["x"] + b_var
        p = tf.sigmoid(y)
        scores = tf.stack([1.0 - p, p], axis=1)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(y)[0], 1])
        x_in = v1.placeholder(tf.float32, [None], name="x")
        y_direct = a_var * x_in + b_var
        sigs = {
            "serving_default": v1.saved_model.predict_signature_def({"x": x_in},
                                                                    {"y": y_direct}),
            "regress": v1.saved_model.regression_signature_def(serialized, y),
            "classify": v1.saved_model.classification_signature_def(serialized, classes,
                                                                    scores),
        }
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out_path))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=sigs)
            builder.save()
    return out_path
