"""A new user's first day: every bad flag, setting or endpoint is one line with the documented
exit code, within a stated bound; the real CLI and daemons as processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelsync.dev.emulator import free_port

pytestmark = pytest.mark.integration
BOUND_S = 30  # every refusal below comes well within this, on a busy machine too
# no Google credentials anywhere, and google-auth's metadata-server probe kept on loopback
NO_GCP = {
    "HOME": "",
    "GOOGLE_APPLICATION_CREDENTIALS": "",
    "STORAGE_EMULATOR_HOST": "",
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "CLOUDSDK_CONFIG": "/nonexistent",
}
TOKENS = {
    "MODELSYNC_ADMIN_TOKEN": "admin-token-0123456789",
    "MODELSYNC_NODE_SECRET": "node-secret-0123456789",
}


def run(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[int, str, float]:
    full = {"PATH": "/usr/bin:/bin", "MODELSYNC_LOG_LEVEL": "info", "HOME": str(tmp_path), **env}
    started = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=BOUND_S * 2,
        stdin=subprocess.DEVNULL,
    )
    return res.returncode, res.stderr, time.monotonic() - started


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("command", ["master", "puller", "config-manager"])
def test_port_out_of_range_is_one_line(command: str, tmp_path: Path) -> None:
    code, err, seconds = run([command, "--port", "70000"], {}, tmp_path)
    line = one_line(err)
    assert code == 2 and seconds < BOUND_S
    assert line.startswith(f"modelsync {command}: error:") and "--port" in line
    assert "0-65535" in line


@pytest.mark.parametrize("command", ["master", "puller", "config-manager"])
def test_port_in_use_is_one_line(command: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        env = {
            "MODELSYNC_BUCKET": "b",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
            "MODELSYNC_MODEL_ROOT": str(tmp_path / "root"),
            "MODELSYNC_HTTP_HOST": "127.0.0.1",
            "MODELSYNC_HTTP_PORT": str(port),
            "MODELSYNC_DB": str(tmp_path / "m.sqlite3"),
            **TOKENS,
        }
        code, err, seconds = run([command], env, tmp_path)
    line = one_line(err)
    assert code == 2 and seconds < BOUND_S
    assert f"127.0.0.1:{port} is already in use" in line and "MODELSYNC_HTTP_PORT" in line


@pytest.mark.parametrize("command", ["list", "puller"])
def test_no_credentials_is_one_line(command: str, tmp_path: Path) -> None:
    env = {
        **NO_GCP,
        "MODELSYNC_BUCKET": "b",
        "MODELSYNC_MODEL_ROOT": str(tmp_path / "r"),
        "MODELSYNC_HTTP_PORT": str(free_port()),
    }
    code, err, seconds = run([command], env, tmp_path)
    line = one_line(err)
    assert code == 2 and seconds < BOUND_S
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line and "STORAGE_EMULATOR_HOST" in line


def test_unreachable_emulator_is_one_line_within_seconds(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    # refused: nothing listens there now
    code, err, seconds = run(
        ["list"],
        {"MODELSYNC_BUCKET": "b", "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"},
        tmp_path,
    )
    line = one_line(err)
    assert code == 2 and seconds < BOUND_S
    assert f"http://127.0.0.1:{port}" in line and "connection refused" in line
    assert len(line) < 300
    # a blackhole (accepts, never answers): given up after the connect/read bound
    with socket.create_server(("127.0.0.1", 0), backlog=16) as hole:
        port = hole.getsockname()[1]
        code, err, seconds = run(
            ["list"],
            {
                "MODELSYNC_BUCKET": "b",
                "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
                "MODELSYNC_GCS_TIMEOUT_S": "2",
            },
            tmp_path,
        )
    line = one_line(err)
    assert code == 2 and seconds < BOUND_S
    assert f"http://127.0.0.1:{port}" in line and "timed out" in line


def test_help_is_plain_text(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, timeout=BOUND_S
    )
    assert res.returncode == 0 and "``" not in res.stdout
    assert "modelsync COMMAND --help" in res.stdout and "gateway" in res.stdout


def test_publish_errors_name_the_command(tmp_path: Path, store_settings) -> None:  # type: ignore[no-untyped-def]
    code, err, _s = run(
        ["publish", str(tmp_path / "missing"), "--model", "m"],
        {
            "MODELSYNC_BUCKET": store_settings.bucket,
            "STORAGE_EMULATOR_HOST": store_settings.emulator_host,
        },
        tmp_path,
    )
    line = one_line(err)
    assert code == 1 and line.startswith("modelsync publish: error:")


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"MODELSYNC_NODE_TOKEN": "node-token-0123456789"}, "MODELSYNC_NODE_TOKEN"),
        ({"MODELSYNC_SESSION_SECURE": "sometimes"}, "MODELSYNC_SESSION_SECURE"),
        ({"MODELSYNC_SESSION_KEY": "short"}, "MODELSYNC_SESSION_KEY"),
        ({"MODELSYNC_GATEWAY_PORT": "99999"}, "MODELSYNC_GATEWAY_PORT"),
    ],
)
def test_a_bad_security_setting_of_the_master_is_one_line(
    env: dict[str, str], setting: str, tmp_path: Path
) -> None:
    code, err, seconds = run(["master"], {"MODELSYNC_BUCKET": "b", **TOKENS, **env}, tmp_path)
    line = one_line(err)
    assert code == 2 and seconds < BOUND_S
    assert line.startswith("modelsync master: error:") and setting in line


def test_a_node_with_another_nodes_token_is_one_line(tmp_path: Path) -> None:
    from modelsync.nodeauth import node_token

    env = {
        "MODELSYNC_BUCKET": "b",
        "MODELSYNC_MODEL_ROOT": str(tmp_path / "r"),
        "MODELSYNC_NODE_ID": "n1",
        "MODELSYNC_NODE_TOKEN": node_token("node-secret-0123456789", "n2"),
    }
    code, err, seconds = run(["config-manager"], env, tmp_path)
    line = one_line(err)
    assert code == 2 and seconds < BOUND_S and "token of node 'n2'" in line
