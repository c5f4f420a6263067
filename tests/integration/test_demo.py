"""`modelsync demo` and `modelsync dev gcs` as a user runs them: start, work, stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def read_until(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip("\n"))
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} not seen; got: {lines}")


def start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "modelsync.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_demo_publishes_lists_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = start(["demo", "--workdir", str(tmp_path)])
    try:
        lines = read_until(proc, "ready; press Ctrl-C", timeout_s=180)
        text = "\n".join(lines)
        assert "published gs://modelsync-demo/models/demo/1/" in text
        assert "published gs://modelsync-demo/models/demo/2/" in text
        url = next(x for x in lines if "GCS emulator" in x).split(" on ")[1].split(",")[0]
        with urllib.request.urlopen(f"{url}/storage/v1/b/modelsync-demo/o", timeout=5) as r:
            assert b"models/wide/1/variables/variables.data-00003-of-00004" in r.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dev_gcs_serves_until_sigterm() -> None:
    proc = start(["dev", "gcs", "--bucket", "b1"])
    try:
        lines = read_until(proc, "export STORAGE_EMULATOR_HOST=", timeout_s=30)
        url = lines[-1].split("=", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/storage/v1/b/b1", timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
