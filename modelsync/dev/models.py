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


def make_linear_model(
    out: str | os.PathLike[str],
    a: float,
    b: float = 0.0,
    *,
    shards: int = 1,
    pad_bytes: int = 0,
    seed: int = 0,
    input_name: str = "x",
) -> Path:
    """``y = a*x + b`` (``serving_default``; and ``double``, which adds ``y2 = 2y``), float32
    [None]. ``input_name``: the input's name in both signatures (another name than ``x`` is a
    signature break for the clients of a model that had ``x``)."""
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
            self.pad = [
                tf.Variable(rng.random(per_shard, dtype=np.float32), name=f"pad{i}")
                for i in range(n_pad)
            ]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name=input_name)])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name=input_name)])
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
    tf.saved_model.save(
        module,
        str(out_path),
        signatures={"serving_default": module.serve, "double": module.double},
        options=options,
    )
    (out_path / "assets.extra").mkdir(exist_ok=True)
    (out_path / "assets.extra" / "modelsync_demo.txt").write_text(
        f"linear model y = {a} * x + {b}\n"
    )
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
            "serving_default": v1.saved_model.predict_signature_def({"x": x_in}, {"y": y_direct}),
            "regress": v1.saved_model.regression_signature_def(serialized, y),
            "classify": v1.saved_model.classification_signature_def(serialized, classes, scores),
        }
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out_path))
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=sigs)
            builder.save()
    return out_path


def make_two_input_model(out: str | os.PathLike[str], a: float, b: float = 1.0) -> Path:
    """A SavedModel with two named inputs of different dtypes, for the gateway.

    ``serving_default`` maps ``x`` (float32, shape [None]) and ``n`` (int64, shape [None]) to
    ``y = a*x + b*n`` (float32); ``pair`` answers two outputs, ``y`` and ``n2 = 2*n`` (int64).
    """
    _quiet_tf()
    import tensorflow as tf

    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()):
        raise FileExistsError(f"{out_path} exists and is not empty")

    class TwoInputs(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(a, dtype=tf.float32, name="a")
            self.b = tf.Variable(b, dtype=tf.float32, name="b")

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.float32, name="x"),
                tf.TensorSpec([None], tf.int64, name="n"),
            ]
        )
        def serve(self, x: tf.Tensor, n: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.a * x + self.b * tf.cast(n, tf.float32)}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.float32, name="x"),
                tf.TensorSpec([None], tf.int64, name="n"),
            ]
        )
        def pair(self, x: tf.Tensor, n: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": self.a * x + self.b * tf.cast(n, tf.float32), "n2": 2 * n}

    module = TwoInputs()
    out_path.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(
        module, str(out_path), signatures={"serving_default": module.serve, "pair": module.pair}
    )
    return out_path


def _empty_out(out: str | os.PathLike[str]) -> Path:
    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()):
        raise FileExistsError(f"{out_path} exists and is not empty")
    out_path.mkdir(parents=True, exist_ok=True)
    return out_path


def make_erroring_model(
    out: str | os.PathLike[str], a: float, b: float = 0.0, threshold: float = 0.8
) -> Path:
    """``y = a*x + b`` (``x``, ``y``: float32 [None]), but a request with any ``x >= threshold``
    fails: the graph's ``tf.debugging.assert_less`` raises InvalidArgumentError, which TF
    Serving (and the compatible server) answers as INVALID_ARGUMENT ("assertion failed: …").
    With x uniform in [0, 1) and threshold 0.8, one-value requests fail 20 % of the time."""
    _quiet_tf()
    import tensorflow as tf

    out_path = _empty_out(out)

    class Erroring(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(a, dtype=tf.float32, name="a")
            self.b = tf.Variable(b, dtype=tf.float32, name="b")
            self.threshold = tf.Variable(threshold, dtype=tf.float32, name="threshold")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            check = tf.debugging.assert_less(
                x, self.threshold, message=f"modelsync erroring model: x must be < {threshold}"
            )
            with tf.control_dependencies([check]):
                return {"y": self.a * x + self.b}

    module = Erroring()
    tf.saved_model.save(module, str(out_path), signatures={"serving_default": module.serve})
    return out_path


def make_nan_model(out: str | os.PathLike[str], warmup: bool = True) -> Path:
    """``y = x * NaN``: NaN for every input (``x``, ``y``: float32 [None]). With ``warmup`` it
    ships ``assets.extra/tf_serving_warmup_requests`` with one predict request (x = [1.0]), so
    it loads fine (TF Serving's warmup checks that requests run, not their values) and only a
    check of the outputs catches it."""
    _quiet_tf()
    import tensorflow as tf

    from modelsync.savedmodel import saved_model_signatures
    from modelsync.warmup import WARMUP_FILE, warmup_file_bytes

    out_path = _empty_out(out)

    class NaN(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x * float("nan")}

    module = NaN()
    tf.saved_model.save(module, str(out_path), signatures={"serving_default": module.serve})
    if warmup:
        sigs = saved_model_signatures("saved_model.pb", (out_path / "saved_model.pb").read_bytes())
        (out_path / WARMUP_FILE).parent.mkdir(exist_ok=True)
        (out_path / WARMUP_FILE).write_bytes(
            warmup_file_bytes(['{"instances": [1.0]}'], sigs, "nan")
        )
    return out_path


def make_slow_model(
    out: str | os.PathLike[str],
    a: float,
    b: float = 0.0,
    factor_ms: float = 20.0,
    *,
    size: int = 64,
) -> Path:
    """``y = a*x + b`` (``x``, ``y``: float32 [None]) that spends about ``factor_ms`` more CPU
    time on every request: a ``tf.while_loop`` of ``m = tanh(m @ w)`` with ``size`` x ``size``
    float32 matrices, whose result is added to ``y`` times a variable that is 0 (a variable,
    like the loop count, so Grappler can neither fold nor prune the loop; tanh keeps ``m``
    finite, so ``0 * mean(m)`` is exactly 0).

    Calibrated on this machine when the model is written: the saved function is timed (best of
    5) with 0 and with 200 iterations, and the loop count is set to ``factor_ms`` divided by the
    measured time of one iteration. Plain graph ops only (no py_function, which cannot be
    saved)."""
    _quiet_tf()
    import time

    import numpy as np
    import tensorflow as tf

    out_path = _empty_out(out)
    rng = np.random.default_rng(0)

    class Slow(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(a, dtype=tf.float32, name="a")
            self.b = tf.Variable(b, dtype=tf.float32, name="b")
            scale = 1.0 / np.sqrt(size)
            self.w = tf.Variable(rng.normal(0, scale, (size, size)).astype(np.float32), name="w")
            self.m0 = tf.Variable(rng.normal(0, 1, (size, size)).astype(np.float32), name="m0")
            self.iterations = tf.Variable(0, dtype=tf.int32, name="iterations")
            self.zero = tf.Variable(0.0, dtype=tf.float32, name="zero")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            _, m = tf.while_loop(
                lambda i, m: i < self.iterations,
                lambda i, m: (i + 1, tf.tanh(tf.matmul(m, self.w))),
                (tf.constant(0), self.m0),
            )
            return {"y": self.a * x + self.b + self.zero * tf.reduce_mean(m)}

    module = Slow()
    x = tf.constant([1.0], dtype=tf.float32)

    def seconds(iterations: int) -> float:
        module.iterations.assign(iterations)
        module.serve(x)  # traced and warm
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            module.serve(x)["y"].numpy()
            best = min(best, time.perf_counter() - started)
        return best

    probe = 200
    per_iteration_s = max((seconds(probe) - seconds(0)) / probe, 1e-7)
    module.iterations.assign(max(1, round(factor_ms / 1000.0 / per_iteration_s)))
    tf.saved_model.save(module, str(out_path), signatures={"serving_default": module.serve})
    return out_path


class ModelWriteError(RuntimeError):
    """Writing a demo model in the child process failed; the message is one line."""


QUIET_SCRIPT = (
    "import json, sys\n"
    "from modelsync.dev.models import make_linear_model\n"
    "for kwargs in json.loads(sys.argv[1]):\n"
    "    try:\n"
    "        make_linear_model(**kwargs)\n"
    "    except FileExistsError as exc:\n"
    "        print('modelsync-error:', exc, file=sys.stderr); sys.exit(3)\n"
)


def write_linear_models_quietly(
    calls: list[dict[str, object]], log_path: str | os.PathLike[str] | None = None
) -> None:
    """``make_linear_model(**kwargs)`` for each of ``calls``, in a child process: TensorFlow's
    start-up noise (absl, oneDNN, CUDA probes, written to the process's stderr before any log
    level applies) goes to ``log_path`` (or is dropped) instead of between a command's lines.
    ModelWriteError with the reason when the child fails."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", QUIET_SCRIPT, json.dumps(calls)],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )
    if log_path is not None:
        Path(log_path).write_bytes(done.stdout + done.stderr)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        ours = [x for x in lines if x.startswith("modelsync-error:")]
        why = ours[-1].removeprefix("modelsync-error:").strip() if ours else lines[-1]
        raise ModelWriteError(why)
