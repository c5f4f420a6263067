"""Model warmup as TF Serving does it, in the compatible server (``assets.extra/
tf_serving_warmup_requests`` replayed during the load, before AVAILABLE), and ``modelsync publish
--warmup`` writing that file. Warmup files here are written with TensorFlow's own TFRecordWriter
and tensorflow-serving-api's messages, not with modelsync's code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from helpers import wait_for
from servers import ModelServerClient, config_text
from tensorflow_serving.apis import get_model_status_pb2, prediction_log_pb2

from modelsync.dev.procs import start_model_server
from modelsync.manifest import parse_manifest
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATE = get_model_status_pb2.ModelVersionStatus.State
MONITORING_CONFIG = Path(__file__).resolve().parents[2] / "tfserving" / "monitoring.config"
WARMUP = Path("assets.extra") / "tf_serving_warmup_requests"
LATENCY = ":tensorflow:serving:model_warmup_latency"
RECORDS = ":tensorflow:serving:model_warmup_records_read"
INVALID_ARGUMENT, UNIMPLEMENTED, DATA_LOSS = 3, 12, 15


def predict_record(
    inputs: dict[str, list[float]], model: str = "some-other-model", version: int | None = 99
) -> bytes:
    """A serialized PredictionLog naming another model and version (TF Serving ignores both)."""
    log = prediction_log_pb2.PredictionLog()
    req = log.predict_log.request
    req.model_spec.name = model
    if version is not None:
        req.model_spec.version.value = version
    for key, values in inputs.items():
        req.inputs[key].CopyFrom(tf.make_tensor_proto(np.array(values, dtype=np.float32)))
    return log.SerializeToString()


def write_warmup(version_dir: Path, records: list[bytes]) -> None:
    (version_dir / WARMUP).parent.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(version_dir / WARMUP)) as writer:
        for record in records:
            writer.write(record)


class Env:
    def __init__(self, root: Path, client: ModelServerClient, model_factory) -> None:  # type: ignore[no-untyped-def]
        self.root, self.client, self.model_factory = root, client, model_factory
        self.models: dict[str, dict] = {}

    def version(self, model: str, version: int = 1, a: float = 2.0) -> Path:
        path = self.root / model / str(version)
        shutil.copytree(self.model_factory(a), path)
        return path

    def serve(self, model: str) -> tuple[int, int, str]:
        """Add ``model`` to the config, reload, and wait until its version 1 settles."""
        self.models[model] = {"base_path": str(self.root / model)}
        self.client.reload(config_text(self.models))
        return wait_for(lambda: self._settled(model), 60, f"{model} settled")

    def _settled(self, model: str) -> tuple[int, int, str] | None:
        st = self.client.status(model).get(1)
        return st if st and st[0] in (STATE.AVAILABLE, STATE.END) else None

    def metrics(self) -> str:
        url = self.client.rest + "/monitoring/prometheus/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, model_factory) -> Iterator[Env]:  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("warmup")
    root = work / "models"
    root.mkdir()
    cfg = work / "models.config"
    cfg.write_text("model_config_list {\n}\n")
    proc = start_model_server(
        work,
        model_config_file=str(cfg),
        flags=[
            "--file_system_poll_wait_seconds=1",
            "--max_num_load_retries=0",
            f"--monitoring_config_file={MONITORING_CONFIG}",
        ],
    )
    client = ModelServerClient(proc.grpc_port, proc.rest_port)  # type: ignore[attr-defined]
    yield Env(root, client, model_factory)
    client.channel.close()
    assert proc.stop() == 0, proc.log_tail()


def test_good_warmup_loads_and_is_recorded(env: Env) -> None:
    path = env.version("good")
    write_warmup(
        path,
        [
            predict_record({"x": [1.0, 2.0]}),
            predict_record({"x": [3.0]}, model="", version=None),
            predict_record({"x": [4.0]}, model="good", version=1),
        ],
    )
    assert env.serve("good") == (STATE.AVAILABLE, 0, "")
    version, out = env.client.predict("good", [1.0])
    assert version == 1 and out["y"].tolist() == [3.0]
    page = env.metrics()
    labels = f'model_path="{path}",status="OK"'
    assert f"{LATENCY}_count{{{labels}}} 1\n" in page
    assert f"{RECORDS}{{{labels}}} 3\n" in page
    assert f'{LATENCY}_bucket{{{labels},le="+Inf"}} 1\n' in page
    # warmup requests are not requests: nothing counted for the model
    assert ':tensorflow:serving:request_count{model_name="some-other-model"' not in page
    assert ':tensorflow:serving:request_count{model_name="good",status="OK"} 1\n' in page


def test_bad_request_fails_the_load(env: Env) -> None:
    path = env.version("badreq")
    write_warmup(path, [predict_record({"x": [1.0]}), predict_record({"z": [1.0]})])
    state, code, message = env.serve("badreq")
    assert (state, code) == (STATE.END, INVALID_ARGUMENT), message
    assert message == (
        "Signature input alias: x(feed name: serving_default_x:0) not found in "
        "request and no default value provided. Inputs expected to be in the "
        "request {z}, or default input alias set:"
    )
    with pytest.raises(grpc.RpcError) as info:  # no version loaded: NOT_FOUND, as TF Serving
        env.client.predict("badreq", [1.0])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert f'model_path="{path}"' not in env.metrics()  # a failed request records nothing


def test_not_a_tfrecord_is_data_loss(env: Env) -> None:
    path = env.version("notrecord")
    (path / WARMUP).parent.mkdir(exist_ok=True)
    (path / WARMUP).write_text('{"instances": [1.0]}\n')
    state, code, message = env.serve("notrecord")
    assert (state, code) == (STATE.END, DATA_LOSS), message
    assert message == (
        "corrupted record at 0 (Is this even a TFRecord file?). Please verify "
        "your warmup data is in TFRecord format."
    )
    labels = (
        f'model_path="{path}",'
        'status="DATA_LOSS: corrupted record at 0 (Is this even a TFRecord file?)"'
    )
    page = env.metrics()
    assert f"{LATENCY}_count{{{labels}}} 1\n" in page and f"{RECORDS}{{{labels}}} 0\n" in page


def test_at_most_1000_records(env: Env) -> None:
    ok = env.version("thousand")
    write_warmup(ok, [predict_record({"x": [float(i)]}) for i in range(1000)])
    assert env.serve("thousand") == (STATE.AVAILABLE, 0, "")
    assert f'{RECORDS}{{model_path="{ok}",status="OK"}} 1000\n' in env.metrics()
    path = env.version("toomany")
    write_warmup(path, [predict_record({"x": [float(i)]}) for i in range(1001)])
    state, code, message = env.serve("toomany")
    assert (state, code) == (STATE.END, INVALID_ARGUMENT), message
    assert message == f"Number of warmup records exceeds the maximum (1000) at {path / WARMUP}"


def test_unsupported_log_type(env: Env) -> None:
    path = env.version("sessionrun")
    log = prediction_log_pb2.PredictionLog()
    log.session_run_log.SetInParent()
    write_warmup(path, [log.SerializeToString()])
    state, code, message = env.serve("sessionrun")
    assert (state, code, message) == (
        STATE.END,
        UNIMPLEMENTED,
        "Unsupported log_type for warmup: 5",
    )


def test_warmup_switched_off_as_the_official_flag_does(tmp_path: Path, model_factory) -> None:  # type: ignore[no-untyped-def]
    """``--enable_model_warmup=false``: the warmup file is not read at all (a broken one loads)."""
    base = tmp_path / "models" / "nowarm"
    shutil.copytree(model_factory(2.0), base / "1")
    (base / "1" / WARMUP).parent.mkdir(exist_ok=True)
    (base / "1" / WARMUP).write_text("not a TFRecord\n")
    proc = start_model_server(
        tmp_path,
        model_name="nowarm",
        model_base_path=str(base),
        flags=[
            "--enable_model_warmup=false",
            "--num_request_iterations_for_warmup=3",
            f"--monitoring_config_file={MONITORING_CONFIG}",
        ],
    )
    client = ModelServerClient(proc.grpc_port, proc.rest_port)  # type: ignore[attr-defined]
    try:
        state = wait_for(
            lambda: (
                (st := client.status("nowarm").get(1))
                and st[0] in (STATE.AVAILABLE, STATE.END)
                and st
            ),
            60,
            "nowarm settled",
        )
        assert state == (STATE.AVAILABLE, 0, ""), state
        assert client.predict("nowarm", [1.0])[1]["y"].tolist() == [3.0]
        url = client.rest + "/monitoring/prometheus/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert f"{LATENCY}_count{{" not in r.read().decode()  # no warmup ran
    finally:
        client.channel.close()
        assert proc.stop() == 0, proc.log_tail()


def run_cli(args: list[str], settings: StoreSettings) -> subprocess.CompletedProcess[str]:
    run_env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": settings.emulator_host or "",
        "MODELSYNC_BUCKET": settings.bucket,
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_publish_with_warmup(
    store: GCSStore, store_settings: StoreSettings, model_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    src = model_factory(2.0)
    requests = tmp_path / "warmup.jsonl"
    requests.write_text(
        json.dumps({"instances": [1.0, 2.0]})
        + "\n\n"
        + json.dumps({"inputs": {"x": [3.0]}, "signature_name": "double"})
        + "\n"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"instances": [1.0]}) + "\n" + json.dumps({"inputs": {"z": [1.0]}}) + "\n"
    )
    refused = run_cli(["publish", str(src), "--model", "m", "--warmup", str(bad)], store_settings)
    assert refused.returncode == 1 and "line 2" in refused.stderr and "z" in refused.stderr
    assert store.list_objects("models/") == []  # nothing written

    res = run_cli(["publish", str(src), "--model", "m", "--warmup", str(requests)], store_settings)
    assert res.returncode == 0, res.stderr
    name = "models/m/1/" + WARMUP.as_posix()
    objects = {o.name: o for o in store.list_objects("models/m/1/")}
    assert name in objects
    manifest = parse_manifest(store.read("models/m/1/_READY"))
    assert manifest is not None
    listed = {f.path: f for f in manifest.files}
    assert listed[WARMUP.as_posix()].size == objects[name].size
    assert listed[WARMUP.as_posix()].crc32c == objects[name].crc32c
    assert not (src / WARMUP).exists()  # the source directory is left as it was

    local = tmp_path / "warmup.tfrecord"
    local.write_bytes(store.read(name))
    logs = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(str(local))
    ]
    assert [tf.make_ndarray(log.predict_log.request.inputs["x"]).tolist() for log in logs] == [
        [1.0, 2.0],
        [3.0],
    ]
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == ["", "double"]
