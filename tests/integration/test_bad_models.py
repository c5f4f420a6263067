"""The realistically bad models of modelsync.dev.models, served by the compatible server and
called over gRPC with modelsync's TF-free PredictClient: one that fails some requests, one that
answers NaN (and passes its warmup), one that is slow."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from helpers import wait_for
from servers import ModelServerClient, config_text
from tensorflow_serving.apis import get_model_status_pb2

from modelsync.client import PredictClient
from modelsync.dev.models import (
    make_erroring_model,
    make_linear_model,
    make_nan_model,
    make_slow_model,
)
from modelsync.dev.procs import start_model_server
from modelsync.warmup import WARMUP_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
MODELS = ("erroring", "nan", "slow", "linear")
MONITORING_CONFIG = Path(__file__).resolve().parents[2] / "tfserving" / "monitoring.config"


@dataclass
class Served:
    client: PredictClient
    root: Path
    rest_port: int

    def predict(self, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.client.predict(model, {"x": x})[1]

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.rest_port}/monitoring/prometheus/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("bad-models")
    root = work / "models"
    make_erroring_model(root / "erroring" / "1", 2.0, 1.0, threshold=0.8)
    make_nan_model(root / "nan" / "1")
    make_slow_model(root / "slow" / "1", 2.0, 1.0, factor_ms=25.0)
    make_linear_model(root / "linear" / "1", 2.0, 1.0)
    cfg = work / "models.config"
    cfg.write_text(config_text({m: {"base_path": str(root / m)} for m in MODELS}))
    proc = start_model_server(
        work,
        model_config_file=str(cfg),
        flags=["--max_num_load_retries=0", f"--monitoring_config_file={MONITORING_CONFIG}"],
    )
    status = ModelServerClient(proc.grpc_port, proc.rest_port)  # type: ignore[attr-defined]
    for m in MODELS:
        wait_for(lambda m=m: status.status(m).get(1, (0,))[0] == AVAILABLE, 60, f"{m} loaded")
    status.channel.close()
    client = PredictClient(f"127.0.0.1:{proc.grpc_port}")  # type: ignore[attr-defined]
    yield Served(client, root, proc.rest_port)  # type: ignore[attr-defined]
    client.close()
    assert proc.stop() == 0, proc.log_tail()


def test_erroring_model_fails_requests_at_or_over_the_threshold(served: Served) -> None:
    rng = np.random.default_rng(7)
    errors, answered = 0, 0
    for _ in range(200):
        x = rng.random(1, dtype=np.float32)
        try:
            out = served.predict("erroring", x)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
            assert "assertion failed" in (exc.details() or "")
            assert float(x[0]) >= 0.8
            errors += 1
        else:
            assert float(x[0]) < 0.8
            np.testing.assert_allclose(out["y"], 2.0 * x + 1.0, rtol=1e-6)
            answered += 1
    assert 0.10 <= errors / 200 <= 0.30, errors
    assert answered + errors == 200


def test_nan_model_loads_with_its_warmup_and_answers_nan(served: Served, tmp_path: Path) -> None:
    out = served.predict("nan", np.array([0.0, 1.0, -3.5], dtype=np.float32))
    assert out["y"].shape == (3,) and np.isnan(out["y"]).all()
    labels = f'model_path="{served.root / "nan" / "1"}",status="OK"'
    page = served.metrics()  # its warmup request ran (and passed) during the load
    assert f":tensorflow:serving:model_warmup_latency_count{{{labels}}} 1\n" in page
    assert f":tensorflow:serving:model_warmup_records_read{{{labels}}} 1\n" in page
    plain = make_nan_model(tmp_path / "plain", warmup=False)
    assert not (plain / WARMUP_FILE).exists()


def p50_ms(client: PredictClient, model: str, n: int = 30) -> float:
    x = np.array([1.0], dtype=np.float32)
    client.predict(model, {"x": x})
    times = []
    for _ in range(n):
        started = time.perf_counter()
        _, out = client.predict(model, {"x": x})
        times.append((time.perf_counter() - started) * 1000)
        assert out["y"].tolist() == [3.0]
    return float(np.median(times))


def test_slow_model_is_several_times_slower(served: Served) -> None:
    linear, slow = p50_ms(served.client, "linear"), p50_ms(served.client, "slow")
    assert slow >= 3 * linear, (linear, slow)
