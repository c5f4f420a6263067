"""Test-side helpers for the gateway's integration tests: a keep-alive HTTP client, installs
into a model root by one rename, the gateway as a process."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelsync.client import PredictClient
from modelsync.dev.emulator import free_port
from modelsync.dev.procs import ManagedProcess, wait_http_ok


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def doc(self) -> Any:
        return json.loads(self.raw)

    @property
    def version(self) -> int | None:
        v = self.headers.get("x-model-version")
        return int(v) if v else None


class Http:
    """One keep-alive connection to a server on 127.0.0.1."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        hdrs.update(headers or {})
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                out = Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
                if resp.will_close:
                    self.conn.close()
                return out
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return self.call("POST", path, body, **kw)

    def get(self, path: str, **kw: Any) -> Answer:
        return self.call("GET", path, **kw)


def publish_version(src: Path, model_dir: Path, version: int) -> None:
    """Into the model root by one rename, as the puller installs (never a partial version)."""
    tmp = model_dir.parent / f".incoming-{model_dir.name}-{version}"
    shutil.copytree(src, tmp)
    os.rename(tmp, model_dir / str(version))


def start_gateway(workdir: Path, name: str, env: dict[str, str]) -> tuple[ManagedProcess, int]:
    port = free_port()
    proc = ManagedProcess(
        name,
        [sys.executable, "-m", "cli", "gateway", "--port", str(port)],
        workdir / f"{name}.log",
        env=env,
    ).start()
    wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, proc)
    return proc, port


def direct(target: str, model: str, x: list[float], n: list[int]) -> tuple[int, list[float]]:
    """(version, y) of a gRPC Predict straight to TF Serving, two-input model."""
    client = PredictClient(target)
    try:
        version, out = client.predict(
            model,
            {"x": np.array(x, dtype=np.float32), "n": np.array(n, dtype=np.int64)},
            timeout_s=30,
        )
    finally:
        client.close()
    return version, out["y"].tolist()


def scored(gw: Http) -> float:
    """Scoring requests the model "two" answered with 200, from the gateway's metrics."""
    text = gw.get("/metrics").raw.decode()
    return sum(
        float(v)
        for v in re.findall(
            r'modelsync_gateway_requests_total\{convention="(?:mlflow|kraken)",model="two",'
            r'status="200"\} ([0-9.]+)',
            text,
        )
    )
