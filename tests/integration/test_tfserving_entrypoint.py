"""The production entrypoint, healthcheck and monitoring config, run with the compatible server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelsync.dev.emulator import free_port
from modelsync.dev.procs import ManagedProcess, wait_grpc_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TFS = Path(__file__).resolve().parents[2] / "tfserving"


def test_entrypoint_healthcheck_and_prometheus(tmp_path: Path, model_factory) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "models"
    shutil.copytree(model_factory(2.0), root / "demo" / "1")
    grpc_port, rest_port = free_port(), free_port()
    env = {
        "MODELSYNC_MODEL_ROOT": str(root),
        "TFS_GRPC_PORT": str(grpc_port),
        "TFS_REST_PORT": str(rest_port),
        "TFS_MONITORING_CONFIG": str(TFS / "monitoring.config"),
        "TFS_BINARY": str(Path(sys.executable).parent / "tensorflow_model_server"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    health = subprocess.run(
        ["bash", str(TFS / "healthcheck.sh")], env={**os.environ, **env}, timeout=30
    )
    assert health.returncode != 0  # nothing listens yet
    proc = ManagedProcess(
        "tfs", ["bash", str(TFS / "entrypoint.sh")], tmp_path / "tfs.log", env=env
    ).start()
    try:
        wait_grpc_ready(f"127.0.0.1:{grpc_port}", 120, proc)
        # the entrypoint wrote an empty config that the config manager will own
        assert (root / ".modelsync" / "models.config").read_text().startswith("model_config_list")
        health = subprocess.run(
            ["bash", str(TFS / "healthcheck.sh")], env={**os.environ, **env}, timeout=30
        )
        assert health.returncode == 0
        # not configured yet: nothing is served until the config manager says so
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/demo", timeout=5)
        assert info.value.code == 404
        with urllib.request.urlopen(
            f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=5
        ) as r:
            text = r.read().decode()
        assert ":tensorflow:serving:request_count" in text
        assert 'status="NOT_FOUND"' in text  # the request above was counted
    finally:
        assert proc.stop() == 0
