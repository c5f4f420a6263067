"""The first day's leftovers (issue #20, part 5), each as a person meets it: a busy gateway
port, a bucket that does not exist, NaN in a gateway answer, a disabled model's 404, a bad
MODELSYNC_LOG_LEVEL for every command, a quiet `dev make-model`, and a poll that hangs in a GCS
outage (told while it hangs)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_kit import Answer, Http, publish_version, start_gateway
from helpers import wait_for

from modelsync.dev.emulator import GCSEmulator, free_port
from modelsync.dev.procs import ManagedProcess, start_model_server, wait_http_ok
from modelsync.local import LocalLayout
from modelsync.policy import ModelPolicy, Policy

pytestmark = [pytest.mark.integration]

MASTER_ENV = {
    "MODELSYNC_ADMIN_TOKEN": "admin-token-0123456789",
    "MODELSYNC_NODE_SECRET": "node-secret-0123456789",
    "MODELSYNC_DOCKER": "off",
}


def run(
    args: list[str], env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
        timeout=timeout_s,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_gateway_with_its_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = run(["gateway", "--port", str(port)], {"MODELSYNC_HTTP_HOST": "127.0.0.1"})
    assert done.returncode == 2, done.stderr
    assert "already in use" in one_line(done) and str(port) in done.stderr


@pytest.mark.parametrize("daemon", ["master", "puller"])
def test_a_missing_bucket_stops_the_daemon_with_one_line(
    daemon: str, gcs: GCSEmulator, tmp_path: Path
) -> None:
    env = {
        "MODELSYNC_BUCKET": f"no-such-bucket-{os.getpid()}",
        "STORAGE_EMULATOR_HOST": gcs.url,
        "MODELSYNC_DB": str(tmp_path / "m.sqlite3"),
        "MODELSYNC_MODEL_ROOT": str(tmp_path / "models"),
        "MODELSYNC_HTTP_HOST": "127.0.0.1",
        **MASTER_ENV,
    }
    done = run([daemon, "--port", str(free_port())], env, timeout_s=60)
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr)
    line = one_line(done)
    assert "MODELSYNC_BUCKET" in line and "no such bucket" in line


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A storage endpoint that accepts connections and never answers (a GCS outage that hangs
    every call until its deadline)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


def test_a_hanging_poll_is_an_event_and_a_metric_while_it_hangs(
    blackhole: str, tmp_path: Path
) -> None:
    """The bucket unreachable at start is transient: the puller starts and keeps trying; its
    poll hangs (the endpoint never answers) and is told overdue long before its deadline."""
    port = free_port()
    env = {
        "MODELSYNC_BUCKET": "b",
        "STORAGE_EMULATOR_HOST": blackhole,
        "MODELSYNC_MODEL_ROOT": str(tmp_path / "models"),
        "MODELSYNC_HTTP_HOST": "127.0.0.1",
        "MODELSYNC_POLL_S": "0.5",
        "MODELSYNC_POLL_DEADLINE_S": "10",
        "MODELSYNC_GCS_TIMEOUT_S": "10",
    }
    proc = ManagedProcess(
        "puller",
        [sys.executable, "-m", "cli", "puller", "--port", str(port)],
        tmp_path / "puller.log",
        env=env,
    ).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, proc)

        def metric(name: str) -> float:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            (line,) = [x for x in text.splitlines() if x.startswith(f"modelsync_puller_{name} ")]
            return float(line.split()[1])

        wait_for(lambda: metric("poll_overdue") == 1.0, 30, "the poll overdue in /metrics")
        assert metric("poll_running_seconds") > 1.5

        def events() -> list[str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
                return [e["event"] for e in json.loads(r.read())["events"]]

        wait_for(lambda: "poll_overdue" in events(), 10, "a poll_overdue event")
        assert "poll_failed" not in events()  # told while it hangs, not when it ends
        assert "poll_overdue" in proc.log_tail(20000)
    finally:
        # a stop waits for the hanging call's deadline (10 s here)
        assert proc.stop(timeout_s=40) == 0, proc.log_tail()


@pytest.fixture(scope="module")
def nan_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Http]:
    from modelsync.dev.models import make_nan_model

    work = tmp_path_factory.mktemp("nan")
    root = work / "models"
    src = make_nan_model(work / "src", warmup=False)
    (root / "nan").mkdir(parents=True)
    publish_version(src, root / "nan", 1)
    policy = Policy(models={"stopped": ModelPolicy(disabled=True)})
    LocalLayout(root).write_policy(policy, 1)  # the node's saved policy (the puller's)
    cfg = work / "models.config"
    cfg.write_text(
        f'model_config_list {{ config {{ name: "nan" base_path: "{root / "nan"}" '
        'model_platform: "tensorflow" } }'
    )
    server = start_model_server(work, model_config_file=str(cfg))
    gateway, port = start_gateway(
        work,
        "gateway",
        {
            "MODELSYNC_TFSERVING": f"127.0.0.1:{server.grpc_port}",  # type: ignore[attr-defined]
            "MODELSYNC_TFSERVING_REST": f"127.0.0.1:{server.rest_port}",  # type: ignore[attr-defined]
            "MODELSYNC_HTTP_HOST": "127.0.0.1",
            "MODELSYNC_MODEL_ROOT": str(root),
        },
    )
    try:
        yield Http(port)
    finally:
        gateway.stop()
        server.stop()


def strict(raw: bytes) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"not JSON: a bare {name} in {raw[:200]!r}")

    return json.loads(raw, parse_constant=refuse)


def test_nan_in_a_gateway_answer_is_valid_json(nan_gateway: Http) -> None:
    def served() -> Answer | None:
        a = nan_gateway.post("/model/nan/invocations", {"inputs": {"x": [1.0, 2.0]}})
        return a if a.status == 200 else None

    answer = wait_for(served, 60, "the NaN model served")
    assert strict(answer.raw) == {"predictions": ["NaN", "NaN"]}
    kraken = nan_gateway.post(
        "/predict", {"modelData": {"x": [1.0]}, "metaData": {"modelId": "nan"}}
    )
    assert kraken.status == 200 and strict(kraken.raw)["results"] == ["NaN"]  # type: ignore[index]


def test_a_disabled_models_404_says_it_is_disabled(nan_gateway: Http) -> None:
    stopped = nan_gateway.post("/model/stopped/invocations", {"inputs": {"x": [1.0]}})
    assert stopped.status == 404 and "is disabled" in stopped.doc["message"], stopped.doc
    kraken = nan_gateway.post(
        "/predict", {"modelData": {"x": [1.0]}, "metaData": {"modelId": "stopped"}}
    )
    assert kraken.status == 404 and "is disabled" in kraken.doc["error"]
    unknown = nan_gateway.post("/model/nothing/invocations", {"inputs": {"x": [1.0]}})
    assert unknown.status == 404 and "disabled" not in unknown.doc["message"]


COMMANDS = [
    ["master"],
    ["puller"],
    ["config-manager"],
    ["gateway"],
    [
        "model-server",
        "--port",
        "18500",
        "--rest_api_port",
        "18501",
        "--model_name",
        "m",
        "--model_base_path",
        "/nonexistent",
    ],
    ["publish", "/nonexistent", "--model", "m"],
    ["list"],
    ["demo"],
    ["healthcheck"],
    ["node-token", "n1"],
    ["dev", "gcs"],
    ["dev", "smoke"],
    ["dev", "make-model", "/nonexistent/out"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_bad_log_level_is_one_line_and_exit_2_for_every_command(
    args: list[str], tmp_path: Path
) -> None:
    env = {
        **MASTER_ENV,
        "MODELSYNC_BUCKET": "b",
        "MODELSYNC_MODEL_ROOT": str(tmp_path / "models"),
        "MODELSYNC_DB": str(tmp_path / "m.sqlite3"),
        "MODELSYNC_LOG_LEVEL": "loud",
    }
    done = run(args, env, timeout_s=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    line = one_line(done)
    assert "MODELSYNC_LOG_LEVEL" in line and "'loud'" in line


def test_dev_make_model_is_quiet(tmp_path: Path) -> None:
    out = tmp_path / "model"
    done = run(["dev", "make-model", str(out), "--a", "3"], {}, timeout_s=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"wrote SavedModel y = 3.0 * x + 1.0 to {out}"]
    assert done.stderr == ""  # none of TensorFlow's start-up noise
    assert (out / "saved_model.pb").is_file()
    again = run(["dev", "make-model", str(out)], {}, timeout_s=180)
    assert again.returncode == 1 and "exists and is not empty" in one_line(again)
