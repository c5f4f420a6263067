"""`modelsync demo` and `modelsync dev gcs` as a user runs them: start, work, stop on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import kill_tree, wait_for

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
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def rollout_of(master: str, token: str) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{master}/v1/models/demo/rollout", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))


def judged_healthy(master: str, token: str) -> dict[str, Any] | None:
    """The demo's rollout of v4 once a judgement of it is healthy (never rolled back)."""
    r = rollout_of(master, token)
    assert r["status"] != "rolled_back", r["reason"]
    j = r.get("judgement")
    return r if j and j["version"] == 4 and j["verdict"] == "healthy" else None


@pytest.mark.timeout(600)  # the demo run (360 s), its rollout judged (120 s), its stop (60 s)
def test_demo_serves_both_predictions_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = start(["demo", "--workdir", str(tmp_path)])
    try:
        lines = read_until(proc, "running; press Ctrl-C", timeout_s=300)
        text = "\n".join(lines)
        assert "y=[3.0, 5.0] from version 1" in text  # v1: y = 2x + 1
        assert "y=[4.0, 7.0] from version 2" in text  # v2: y = 3x + 1
        assert "y=[5.0, 9.0] from version 3" in text
        assert "['2', '3']" in text  # v1 pruned, v2 kept for rollback
        assert "AVAILABLE on 1/1 node(s), converged" in text  # the master's cluster view
        assert "console: open http://127.0.0.1:" in text and "sign in" in text
        assert "/jobs to submit a file or pasted rows" in text  # the Jobs page
        batch = next(x for x in lines if "[demo] batch job " in x)  # through Redis and a worker
        assert "1000 rows in 1 chunk(s)" in batch
        assert '{"row":0,"version":3,"outputs":{"y":5.0}}' in batch
        redis_port = next(x for x in lines if "Redis (the jobs' broker" in x).rsplit(":", 1)[1]
        redis_port = redis_port.split("/")[0]
        gateway = next(x for x in lines if "/model/demo/invocations" in x).rsplit(" ", 1)[1]
        req = urllib.request.Request(
            gateway, data=b'{"inputs": {"x": [1, 2]}}', method="POST"
        )  # curl -d: a form content type
        with urllib.request.urlopen(req, timeout=10) as r:  # v3, or v4 if its canary is up
            answers = {"3": [5.0, 9.0], "4": [6.0, 11.0]}
            assert json.loads(r.read()) == {"predictions": answers[r.headers["X-Model-Version"]]}
        # v4 rolls out under the load's 2 % bad requests: judged per version against v3 (the
        # label's traffic), the same client errors on both sides, never rolled back
        assert "published v4" in text and "staged rollout" in text
        master, token = next(
            (x.split()[2], x.rsplit(" ", 1)[1].rstrip(")")) for x in lines if "admin token:" in x
        )
        try:
            r = wait_for(lambda: judged_healthy(master, token), 180, "v4 judged healthy")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; rollout: {rollout_of(master, token)}") from None
        j = r["judgement"]
        assert j["source"] == "versions" and j["requests"]["new"] >= 100, j
        assert j["requests"]["baseline"] > 0 and j["baseline"]["client_errors"] >= 0
        assert [c["name"] for c in j["checks"]] == ["server_errors", "client_errors", "latency"]
        url = next(x for x in lines if "GCS emulator" in x).split(": ")[1].split(",")[0]
        with urllib.request.urlopen(f"{url}/storage/v1/b/modelsync-demo/o", timeout=5) as r:
            assert b"models/demo/3/saved_model.pb" in r.read()
        grpc_port = next(x for x in lines if "model server gRPC" in x).rsplit(":", 1)[1]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2)
        import socket

        with pytest.raises(OSError):  # the model server is gone too
            socket.create_connection(("127.0.0.1", int(grpc_port)), timeout=2)
        with pytest.raises(OSError):  # and Redis
            socket.create_connection(("127.0.0.1", int(redis_port)), timeout=2)
    finally:
        kill_tree(proc)  # a failed test leaves none of the demo's processes behind


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
        kill_tree(proc)  # a failed test leaves none of the demo's processes behind


@pytest.mark.timeout(480)
def test_the_demo_says_so_when_its_master_dies(tmp_path: Path) -> None:
    proc = start(["demo", "--workdir", str(tmp_path)])
    try:
        lines = read_until(proc, "running; press Ctrl-C", timeout_s=300)
        master = next(x for x in lines if "  master  " in x)
        pid = int(master.split("(pid ")[1].split(",")[0])
        os.kill(pid, signal.SIGKILL)  # the demo's own child, started by this test's demo
        said = read_until(proc, "has exited", timeout_s=30)[-1]
        assert f"the master (pid {pid}) has exited" in said and "master.log" in said
        assert proc.wait(timeout=60) == 1
    finally:
        kill_tree(proc)
